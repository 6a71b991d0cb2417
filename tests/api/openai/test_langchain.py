"""A second real OpenAI client: LangChain's ChatOpenAI streams one answer from /v1."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from tests.api.openai.conftest import MODEL

pytestmark = pytest.mark.model


def test_langchain_chat_openai_streams_the_same_answer_as_the_native_api(server, http) -> None:
    chat = ChatOpenAI(
        base_url=server.url + "/v1",
        api_key="none",
        model=MODEL,
        temperature=0,
        max_tokens=16,
        max_retries=0,
        timeout=120,
    )
    messages = [SystemMessage("You are a helpful assistant."), HumanMessage("What is the capital of France?")]
    pieces = [chunk.content for chunk in chat.stream(messages)]
    native = http.post(
        "/api/chat",
        json={
            "temperature": 0,
            "max_tokens": 16,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
        },
    ).json()
    assert len([p for p in pieces if p]) > 1  # streamed, not one block
    assert "".join(str(p) for p in pieces) == native["message"]["content"]
    assert "Paris" in native["message"]["content"]


def test_langchain_reads_logprobs_and_several_choices(server) -> None:
    """What LangChain users set for confidence scores and for sampling several candidates: `logprobs=True`
    lands in response_metadata, `n=2` gives two generations."""
    chat = ChatOpenAI(
        base_url=server.url + "/v1",
        api_key="none",
        model=MODEL,
        temperature=0,
        max_tokens=6,
        max_retries=0,
        timeout=120,
        logprobs=True,
        top_logprobs=2,
    )
    answer = chat.invoke([HumanMessage("What is the capital of France?")])
    entries = answer.response_metadata["logprobs"]["content"]
    assert "".join(entry["token"] for entry in entries) == answer.content
    assert all(len(entry["top_logprobs"]) == 2 for entry in entries)
    several = ChatOpenAI(
        base_url=server.url + "/v1", api_key="none", model=MODEL, temperature=0, max_tokens=6, n=2, max_retries=0
    ).generate([[HumanMessage("What is the capital of France?")]])
    texts = [generation.text for generation in several.generations[0]]
    assert len(texts) == 2 and texts[0] == texts[1] == answer.content
