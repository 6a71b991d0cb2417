"""`truncate: "oldest"` on /api/chat with the real model (LLM_CONTEXT_LENGTH=1024 in tests): the oldest turns
go, as few as make room for max_tokens, and the answer says how many; without it, the 400 states the counts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.sse import parse_events

pytestmark = pytest.mark.model

CONTEXT = 1024
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def long_conversation(turns: int = 10) -> list[dict[str, str]]:
    """About 1300 tokens of alternating turns, ending with a short question."""
    messages = [SYSTEM]
    for index in range(turns):
        messages.append({"role": "user", "content": f"Question {index}: " + "tell me about the sea and ships. " * 8})
        messages.append({"role": "assistant", "content": f"Answer {index}: " + "ships sail on the sea. " * 8})
    messages.append({"role": "user", "content": "What is the capital of France?"})
    return messages


async def prompt_tokens(client: Any, messages: list[dict[str, str]]) -> int:
    response = await client.post("/api/tokenize", json={"messages": messages})
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


async def test_without_truncate_a_conversation_larger_than_the_context_is_a_400_with_both_counts(client) -> None:
    messages = long_conversation()
    tokens = await prompt_tokens(client, messages)
    assert tokens > CONTEXT
    response = await client.post("/api/chat", json={"messages": messages, "max_tokens": 20})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "context_length_exceeded" and error["param"] == "messages"
    assert f"{tokens} prompt tokens" in error["message"]
    assert f"context is {CONTEXT} tokens" in error["message"] and "max_tokens 20" in error["message"]
    assert '"truncate": "oldest"' in error["message"]


async def test_truncate_oldest_drops_the_fewest_whole_turns_that_make_room_for_max_tokens(client) -> None:
    messages = long_conversation()
    max_tokens = 20
    response = await client.post(
        "/api/chat", json={"messages": messages, "max_tokens": max_tokens, "temperature": 0, "truncate": "oldest"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    dropped = body["truncated_messages"]
    assert dropped > 0 and dropped % 2 == 0  # whole user/assistant turns
    kept = [SYSTEM, *messages[1 + dropped :]]
    assert body["usage"]["prompt_tokens"] == await prompt_tokens(client, kept)
    assert body["usage"]["prompt_tokens"] + max_tokens <= CONTEXT
    # One turn fewer dropped would not have left room: no more was dropped than needed.
    assert await prompt_tokens(client, [SYSTEM, *messages[1 + dropped - 2 :]]) + max_tokens > CONTEXT
    assert body["message"]["content"].strip()


async def test_the_stream_says_what_was_dropped_in_its_done_event(client) -> None:
    request = {"messages": long_conversation(), "max_tokens": 4, "temperature": 0, "truncate": "oldest"}
    events = parse_events((await client.post("/api/chat/stream", json=request)).text)
    done = events[-1]
    assert done["type"] == "done" and done["truncated_messages"] > 0
    kept = [SYSTEM, *request["messages"][1 + done["truncated_messages"] :]]  # type: ignore[index]
    assert done["usage"]["prompt_tokens"] == await prompt_tokens(client, kept)


async def test_a_conversation_that_fits_drops_nothing(client) -> None:
    request = {"messages": long_conversation(turns=1), "max_tokens": 2, "truncate": "oldest"}
    body = (await client.post("/api/chat", json=request)).json()
    assert body["truncated_messages"] == 0 and body["usage"]["prompt_tokens"] > 100
    events = parse_events((await client.post("/api/chat/stream", json=request)).text)
    assert events[-1]["truncated_messages"] == 0
    generated = parse_events((await client.post("/api/generate/stream", json={"prompt": "Hi", "max_tokens": 2})).text)
    assert "truncated_messages" not in generated[-1]  # a text prompt has no turns to drop


async def test_a_last_turn_that_alone_fills_the_context_is_still_a_400(client) -> None:
    huge = {"role": "user", "content": "the sea and ships " * 300}
    messages = [*long_conversation(turns=2)[:-1], huge]
    response = await client.post("/api/chat", json={"messages": messages, "max_tokens": 8, "truncate": "oldest"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "context_length_exceeded" and error["param"] == "messages"
    alone = await prompt_tokens(client, [SYSTEM, huge])
    assert f"{alone} prompt tokens even with the 4 oldest messages dropped" in error["message"]
    assert f"context is {CONTEXT} tokens" in error["message"]


async def test_without_truncate_a_prompt_that_leaves_too_little_room_is_answered_up_to_the_context(client) -> None:
    # The default drops no turn: an answer with less room than max_tokens stops at the context's end.
    messages = long_conversation(turns=7)
    padding = CONTEXT - 12 - await prompt_tokens(client, messages)
    messages[-1] = {"role": "user", "content": "ship " * padding + messages[-1]["content"]}
    tokens = await prompt_tokens(client, messages)
    assert CONTEXT - 30 < tokens < CONTEXT
    response = await client.post("/api/chat", json={"messages": messages, "max_tokens": 30, "ignore_eos": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["finish_reason"] == "length" and body["truncated_messages"] == 0
    assert body["usage"]["prompt_tokens"] == tokens and body["usage"]["total_tokens"] == CONTEXT


async def test_truncate_accepts_only_its_values(client) -> None:
    response = await client.post("/api/chat", json={"messages": [SYSTEM], "truncate": "newest"})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "truncate"
