"""POST /api/tokenize and /api/detokenize on the real embedded model's tokenizer."""

from __future__ import annotations

import pytest

from tests.api.test_chat import QUESTION
from tests.api.test_errors import assert_error

pytestmark = pytest.mark.model

TEXT = "The capital of France is"


async def test_tokenize_counts_what_generation_counts(client) -> None:
    tokens = await client.post("/api/tokenize", json={"text": TEXT})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    generated = (await client.post("/api/generate", json={"prompt": TEXT, "max_tokens": 1})).json()
    assert body["model"] == "smollm2-135m-instruct"
    assert body["count"] == len(body["tokens"]) == generated["usage"]["prompt_tokens"]
    assert body["max_context"] == 1024  # the tests' LLM_CONTEXT_LENGTH
    assert all(isinstance(t, int) and t >= 0 for t in body["tokens"])


async def test_tokenize_messages_uses_the_chat_template(client) -> None:
    body = (await client.post("/api/tokenize", json={"messages": QUESTION})).json()
    chat = (await client.post("/api/chat", json={"messages": QUESTION, "max_tokens": 1})).json()
    assert body["count"] == chat["usage"]["prompt_tokens"]
    text = (await client.post("/api/detokenize", json={"tokens": body["tokens"]})).json()["text"]
    # Control tokens come back as text: the rendered template, not just the message contents.
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in text


async def test_detokenize_inverts_tokenize(client) -> None:
    text = "Héllo, wörld! 東京 🙂 <|im_start|>"
    tokens = (await client.post("/api/tokenize", json={"text": text, "add_special": False})).json()["tokens"]
    response = await client.post("/api/detokenize", json={"tokens": tokens})
    assert response.status_code == 200, response.text
    assert response.json() == {"model": "smollm2-135m-instruct", "text": text}


async def test_add_special_adds_what_the_model_adds_and_no_more(client, service) -> None:
    engine = service.registry.loaded_engine(None)
    with_special = (await client.post("/api/tokenize", json={"text": TEXT})).json()["tokens"]
    without = (await client.post("/api/tokenize", json={"text": TEXT, "add_special": False})).json()["tokens"]
    assert with_special == await engine.tokenize(TEXT)  # what prepare() feeds the engine
    assert with_special[-len(without) :] == without and len(with_special) >= len(without)


async def test_detokenize_of_nothing_is_empty(client) -> None:
    assert (await client.post("/api/detokenize", json={"tokens": []})).json()["text"] == ""


async def test_token_outside_the_vocabulary_is_named(client, service) -> None:
    engine = service.registry.loaded_engine(None)
    last = engine.vocab_size() - 1
    assert (await client.post("/api/detokenize", json={"tokens": [last]})).status_code == 200
    error = assert_error(
        await client.post("/api/detokenize", json={"tokens": [1, 2, last + 1]}), 422, "invalid_parameter", "tokens[2]"
    )
    assert str(last + 1) in error["message"] and str(last) in error["message"]
    error = assert_error(
        await client.post("/api/detokenize", json={"tokens": [1, -3]}), 422, "invalid_parameter", "tokens[1]"
    )
    assert error["message"] == "tokens[1]: must be an integer >= 0 and <= 2147483647"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "text"),
        ({"text": "hi", "messages": QUESTION}, "text"),
        ({"text": ""}, "text"),
        ({"text": "a\u0000b"}, "text"),
        ({"messages": [{"role": "user", "content": "a\u0000b"}]}, "messages[0].content"),
        ({"text": "hi", "model": "someone/else"}, "model"),
        ({"text": "hi", "add_special": "yes"}, "add_special"),
    ],
)
async def test_bad_tokenize_requests(client, body, param) -> None:
    response = await client.post("/api/tokenize", json=body)
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code, response.json()["error"]["type"], param)
    assert response.status_code == (404 if param == "model" else 422)
