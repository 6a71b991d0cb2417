"""POST /v1/chat/completions with the openai SDK: whole, streamed (with usage), sync and async, and the same
greedy answer as /api/chat."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.openai.conftest import MODEL, QUESTION

pytestmark = pytest.mark.model


def test_chat_completion_has_openais_shape_and_answers(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, temperature=0)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion" and completion.model == MODEL and completion.created > 0
    [choice] = completion.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert "Paris" in (choice.message.content or "")
    assert choice.finish_reason in {"stop", "length"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 16
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_greedy_output_equals_the_native_chat(client: openai.OpenAI, http: httpx.Client) -> None:
    native = http.post("/api/chat", json={"messages": QUESTION, "max_tokens": 20, "temperature": 0}).json()
    completion = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20, temperature=0)
    assert completion.choices[0].message.content == native["message"]["content"]
    assert completion.choices[0].finish_reason == native["finish_reason"]
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == native["usage"]


def test_max_completion_tokens_bounds_the_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_completion_tokens=3, temperature=0, extra_body={"ignore_eos": True}
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert completion.choices[0].finish_reason == "length"


def test_content_parts_and_developer_role_read_as_text_and_system(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    parts = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": QUESTION[0]["content"]}]},
            {"role": "user", "content": [{"type": "text", "text": QUESTION[1]["content"]}]},
        ],
        max_tokens=12,
        temperature=0,
        # Result-neutral fields real clients send are accepted.
        user="tester",
        store=False,
        metadata={"suite": "openai"},
        parallel_tool_calls=False,
        n=1,
        presence_penalty=0,
        frequency_penalty=0,
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content


def test_stream_with_usage_joins_to_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, temperature=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    *with_choices, last = chunks
    assert last.choices == [] and last.usage == whole.usage
    assert all(chunk.usage is None for chunk in with_choices)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in with_choices)
    assert text == whole.choices[0].message.content
    assert with_choices[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_stream_without_include_usage_carries_no_usage(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 4, "stream": True}
    response = http.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f.strip()]
    assert frames[-1] == "data: [DONE]"
    assert all('"usage"' not in frame for frame in frames)


async def test_async_client_whole_and_streamed(async_client: openai.AsyncOpenAI) -> None:
    whole = await async_client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    stream = await async_client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=12, temperature=0, stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == whole.choices[0].message.content and "Paris" in text


def test_truncate_oldest_is_an_extension_here_too(client: openai.OpenAI) -> None:
    messages = [QUESTION[0]]
    for index in range(10):  # about 1300 tokens: more than the context (1024)
        messages.append({"role": "user", "content": f"Question {index}: " + "tell me about the sea and ships. " * 8})
        messages.append({"role": "assistant", "content": f"Answer {index}: " + "ships sail on the sea. " * 8})
    messages.append(QUESTION[1])
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)  # type: ignore[arg-type]
    assert refused.value.code == "context_length_exceeded" and refused.value.param == "messages"
    asked = {"model": MODEL, "messages": messages, "max_tokens": 4, "extra_body": {"truncate": "oldest"}}
    completion = client.chat.completions.create(**asked)  # type: ignore[call-overload]
    dropped = (completion.model_extra or {})["truncated_messages"]
    assert dropped > 0 and dropped % 2 == 0
    assert completion.usage is not None and completion.usage.prompt_tokens + 4 <= 1024
    chunks = list(client.chat.completions.create(**asked, stream=True))
    finishing = next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason)
    assert (finishing.model_extra or {})["truncated_messages"] == dropped
    assert all("truncated_messages" not in (chunk.model_extra or {}) for chunk in chunks if chunk is not finishing)
    plain = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2)
    assert "truncated_messages" not in (plain.model_extra or {})  # not asked: OpenAI's shape exactly
