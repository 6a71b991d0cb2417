"""Every failure answers with the one JSON error body, the right status, and names the field at fault."""

from __future__ import annotations

import pytest


def assert_error(response, status: int, type_: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_, error
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert "Traceback" not in response.text
    return error


async def test_malformed_json(client) -> None:
    response = await client.post(
        "/api/generate", content=b'{"prompt": "hi",', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "param", "rule"),
    [
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens", ">= 1"),
        ({"prompt": "hi", "max_tokens": "ten"}, "max_tokens", "int"),
        ({"prompt": "hi", "temperature": 2.5}, "temperature", "<= 2"),
        ({"prompt": "hi", "top_p": 0}, "top_p", "> 0"),
        ({"prompt": "hi", "top_k": -1}, "top_k", ">= 0"),
        ({"prompt": ""}, "prompt", "length >= 1"),
        ({"prompt": "hi", "unknown_field": 1}, "unknown_field", "unknown field"),
        ({}, "prompt", "missing required field"),
    ],
)
async def test_invalid_field_is_named_with_its_rule(client, body, param, rule) -> None:
    error = assert_error(await client.post("/api/generate", json=body), 422, "invalid_parameter", param)
    assert rule.lower() in error["message"].lower(), error


async def test_unknown_chat_role(client) -> None:
    body = {"messages": [{"role": "wizard", "content": "hi"}]}
    error = assert_error(await client.post("/api/chat", json=body), 422, "invalid_parameter", "messages[0].role")
    assert "user" in error["message"]


async def test_max_tokens_above_the_limit_names_the_setting(client) -> None:
    error = assert_error(
        await client.post("/api/generate", json={"prompt": "hi", "max_tokens": 9000}), 422, "invalid_parameter", "max_tokens"
    )
    assert "LLM_MAX_TOKENS_LIMIT=4096" in error["message"]


async def test_unknown_model_is_404(client) -> None:
    error = assert_error(
        await client.post("/api/generate", json={"prompt": "hi", "model": "someone/else"}), 404, "model_not_found", "model"
    )
    assert "smollm2-135m-instruct" in error["message"]


async def test_body_over_the_byte_limit_is_413(client) -> None:
    response = await client.post("/api/generate", json={"prompt": "x" * 70_000})
    assert_error(response, 413, "request_too_large")


async def test_prompt_longer_than_the_context(client) -> None:
    # ~3000 tokens against a 1024-token context (the test settings).
    error = assert_error(
        await client.post("/api/generate", json={"prompt": "hello " * 3000}), 400, "context_length_exceeded", "prompt"
    )
    assert "1024" in error["message"]
    assert "hello" not in error["message"]


async def test_nul_bytes_are_refused(client) -> None:
    assert_error(await client.post("/api/generate", json={"prompt": "a\u0000b"}), 422, "invalid_parameter", "prompt")


async def test_unknown_route_and_wrong_method(client) -> None:
    assert_error(await client.get("/api/nothing"), 404, "not_found")
    assert_error(await client.get("/api/generate"), 405, "method_not_allowed")
