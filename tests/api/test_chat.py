"""POST /api/chat and /api/chat/stream: the model's own chat template renders the conversation."""

from __future__ import annotations

import pytest

from llm_inference.engines.base import ChatMessage
from tests.api.sse import joined_text, parse_events

pytestmark = pytest.mark.model

# Without a system message SmolLM2's template adds its own, and the 135M model then rambles; with this one
# it answers "The capital of France is Paris." at temperature 0.
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


async def test_chat_answers_as_assistant(client) -> None:
    response = await client.post("/api/chat", json={"messages": QUESTION, "max_tokens": 16, "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"]["role"] == "assistant"
    assert "Paris" in body["message"]["content"]
    assert body["usage"]["completion_tokens"] <= 16


async def test_template_comes_from_the_model(service) -> None:
    engine = service.registry.loaded_engine(None)
    rendered = await engine.render_chat([ChatMessage("user", "Hi")])
    # SmolLM2's GGUF carries a ChatML template: the rendering must use its control tokens and end ready
    # for the assistant's turn.
    assert "<|im_start|>user\nHi<|im_end|>" in rendered
    assert rendered.rstrip().endswith("<|im_start|>assistant")


async def test_system_message_changes_the_rendered_prompt_and_the_answer(client, service) -> None:
    engine = service.registry.loaded_engine(None)
    system = {"role": "system", "content": "You are a pirate. Always answer like a pirate, saying Arr."}
    user = QUESTION[1]
    plain = await engine.render_chat([ChatMessage(**user)])
    with_system = await engine.render_chat([ChatMessage(**system), ChatMessage(**user)])
    assert "<|im_start|>system\nYou are a pirate." in with_system
    assert "You are a pirate." not in plain
    a = (await client.post("/api/chat", json={"messages": [user], "max_tokens": 12, "temperature": 0})).json()
    b = (await client.post("/api/chat", json={"messages": [system, user], "max_tokens": 12, "temperature": 0})).json()
    assert b["usage"]["prompt_tokens"] != a["usage"]["prompt_tokens"]
    assert b["message"]["content"] != a["message"]["content"]


async def test_multi_turn_conversation(client) -> None:
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
    ]
    response = await client.post("/api/chat", json={"messages": messages, "max_tokens": 8, "temperature": 0})
    assert response.status_code == 200
    assert response.json()["message"]["content"].strip()


async def test_chat_stream_equals_chat(client) -> None:
    request = {"messages": QUESTION, "max_tokens": 20, "temperature": 0}
    whole = (await client.post("/api/chat", json=request)).json()
    events = parse_events((await client.post("/api/chat/stream", json=request)).text)
    assert joined_text(events) == whole["message"]["content"]
    assert events[-1]["type"] == "done"
    assert events[-1]["usage"] == whole["usage"]


async def test_stream_true_in_the_body_streams_the_chat(client) -> None:
    request = {"messages": QUESTION, "max_tokens": 12, "temperature": 0}
    whole = (await client.post("/api/chat", json=request)).json()
    flagged = await client.post("/api/chat", json={**request, "stream": True})
    assert flagged.headers["content-type"].startswith("text/event-stream")
    events = parse_events(flagged.text)
    assert joined_text(events) == whole["message"]["content"]
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == whole["finish_reason"]
    error = (await client.post("/api/chat", json={**request, "stream": "sometimes"})).json()["error"]
    assert error["param"] == "stream" and error["message"] == "stream: must be true or false"
