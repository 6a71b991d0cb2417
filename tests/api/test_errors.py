"""Every bad input gets the one JSON error body, the right status and type, and names the field at fault.

BAD_INPUTS is the table docs/hardening.md "Bad input" documents: keep the two in step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

pytestmark = pytest.mark.model

LONG_PROMPT = "hello " * 3000  # ~3000 tokens against the tests' 1024-token context


@dataclass(frozen=True)
class BadInput:
    name: str
    body: Any  # a JSON-able value, or raw bytes sent as they are
    status: int
    type: str
    param: str | None = None
    says: str = ""  # a piece of the message: the rule that was broken
    path: str = "/api/generate"
    headers: dict[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


JSON = {"content-type": "application/json"}
CHAT = "/api/chat"
INVALID = "invalid_parameter"

BAD_INPUTS = [
    BadInput(
        "malformed JSON", b'{"prompt": "hi",', 400, "invalid_json", says="the body is not valid JSON", headers=JSON
    ),
    BadInput(
        "not UTF-8",
        b'{"prompt": "\xff\xfe hi"}',
        400,
        "invalid_json",
        says="the body is not UTF-8: byte 12",
        headers=JSON,
    ),
    BadInput("raw NUL byte in the JSON text", b'{"prompt": "a\x00b"}', 400, "invalid_json", headers=JSON),
    BadInput("empty body", b"", 400, "invalid_json", says="empty", headers=JSON),
    BadInput(
        "JSON nested 5000 deep",
        b'{"stop": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        400,
        "invalid_json",
        says="the body is nested too deeply",
        headers=JSON,
    ),
    BadInput("NUL character in the prompt", {"prompt": "a\u0000b"}, 422, INVALID, "prompt", "NUL"),
    BadInput(
        "NUL character in a message",
        {"messages": [{"role": "user", "content": "a\u0000b"}]},
        422,
        INVALID,
        "messages[0].content",
        "NUL",
        path=CHAT,
    ),
    BadInput("body is an array", [1, 2], 422, INVALID, says="the body must be an object"),
    BadInput("prompt is a number", {"prompt": 5}, 422, INVALID, "prompt", "prompt: must be a string that is not empty"),
    BadInput(
        "max_tokens is a string",
        {"prompt": "hi", "max_tokens": "ten"},
        422,
        INVALID,
        "max_tokens",
        "max_tokens: must be an integer >= 1",
    ),
    BadInput(
        "max_tokens is a numeric string",
        {"prompt": "hi", "max_tokens": "5"},
        422,
        INVALID,
        "max_tokens",
        "max_tokens: must be an integer >= 1",
    ),
    BadInput(
        "ignore_eos is 1",
        {"prompt": "hi", "ignore_eos": 1},
        422,
        INVALID,
        "ignore_eos",
        "ignore_eos: must be true or false",
    ),
    BadInput(
        "max_tokens is a float",
        {"prompt": "hi", "max_tokens": 1.5},
        422,
        INVALID,
        "max_tokens",
        "max_tokens: must be an integer >= 1",
    ),
    BadInput(
        "unknown field",
        {"prompt": "hi", "unknown_field": 1},
        422,
        INVALID,
        "unknown_field",
        "unknown_field: unknown field; accepted fields are model, max_tokens",
    ),
    BadInput("missing prompt", {}, 422, INVALID, "prompt", "prompt: is required"),
    BadInput(
        "max_tokens 0",
        {"prompt": "hi", "max_tokens": 0},
        422,
        INVALID,
        "max_tokens",
        "max_tokens: must be an integer >= 1",
    ),
    BadInput(
        "negative max_tokens", {"prompt": "hi", "max_tokens": -5}, 422, INVALID, "max_tokens", "must be an integer >= 1"
    ),
    BadInput(
        "max_tokens above LLM_MAX_TOKENS_LIMIT",
        {"prompt": "hi", "max_tokens": 9000},
        422,
        INVALID,
        "max_tokens",
        "LLM_MAX_TOKENS_LIMIT=4096",
    ),
    BadInput(
        "max_tokens 10^26", {"prompt": "hi", "max_tokens": 10**26}, 422, INVALID, "max_tokens", "LLM_MAX_TOKENS_LIMIT"
    ),
    BadInput(
        "temperature above 2",
        {"prompt": "hi", "temperature": 2.5},
        422,
        INVALID,
        "temperature",
        "temperature: must be a number >= 0 and <= 2",
    ),
    BadInput(
        "negative temperature",
        {"prompt": "hi", "temperature": -1},
        422,
        INVALID,
        "temperature",
        "temperature: must be a number >= 0 and <= 2",
    ),
    BadInput("NaN temperature", b'{"prompt": "hi", "temperature": NaN}', 400, "invalid_json", headers=JSON),
    BadInput("top_p 0", {"prompt": "hi", "top_p": 0}, 422, INVALID, "top_p", "top_p: must be a number > 0 and <= 1"),
    BadInput(
        "top_p above 1", {"prompt": "hi", "top_p": 1.5}, 422, INVALID, "top_p", "top_p: must be a number > 0 and <= 1"
    ),
    BadInput(
        "negative top_k",
        {"prompt": "hi", "top_k": -1},
        422,
        INVALID,
        "top_k",
        "top_k: must be an integer >= 0 and <= 1000",
    ),
    BadInput(
        "top_k above 1000",
        {"prompt": "hi", "top_k": 1001},
        422,
        INVALID,
        "top_k",
        "top_k: must be an integer >= 0 and <= 1000",
    ),
    BadInput(
        "negative seed",
        {"prompt": "hi", "seed": -1},
        422,
        INVALID,
        "seed",
        "seed: must be an integer >= 0 and <= 4294967295",
    ),
    BadInput("empty prompt", {"prompt": ""}, 422, INVALID, "prompt", "prompt: must be a string that is not empty"),
    BadInput(
        "empty model name",
        {"prompt": "hi", "model": ""},
        422,
        INVALID,
        "model",
        "model: must be a string of 1 to 512 characters",
    ),
    BadInput(
        "empty messages",
        {"messages": []},
        422,
        INVALID,
        "messages",
        "messages: must be an array of at least 1 items",
        path=CHAT,
    ),
    BadInput(
        "messages is a string", {"messages": "hi"}, 422, INVALID, "messages", "messages: must be an array", path=CHAT
    ),
    BadInput(
        "message without content",
        {"messages": [{"role": "user"}]},
        422,
        INVALID,
        "messages[0].content",
        "messages[0].content: is required",
        path=CHAT,
    ),
    BadInput(
        "message with an unknown field",
        {"messages": [{"role": "user", "content": "x", "name": "bob"}]},
        422,
        INVALID,
        "messages[0].name",
        "unknown field; accepted fields are role, content, tool_calls, tool_call_id",
        path=CHAT,
    ),
    BadInput(
        "unknown role",
        {"messages": [{"role": "wizard", "content": "hi"}]},
        422,
        INVALID,
        "messages[0].role",
        "messages[0].role: must be one of assistant, system, tool, user",
        path=CHAT,
    ),
    BadInput(
        "too many stop sequences",
        {"prompt": "hi", "stop": [str(i) for i in range(9)]},
        422,
        INVALID,
        "stop",
        "LLM_MAX_STOP_SEQUENCES=8",
    ),
    BadInput(
        "empty stop sequence",
        {"prompt": "hi", "stop": ""},
        422,
        INVALID,
        "stop",
        "stop: must be an array whose items are each a string of 1 to 256 characters or a string of 1 to 256 characters",
    ),
    BadInput(
        "prompt longer than the context", {"prompt": LONG_PROMPT}, 400, "context_length_exceeded", "prompt", "1024"
    ),
    BadInput(
        "conversation longer than the context",
        {"messages": [{"role": "user", "content": LONG_PROMPT}]},
        400,
        "context_length_exceeded",
        "messages",
        "1024",
        path=CHAT,
    ),
    BadInput(
        "unknown model",
        {"prompt": "hi", "model": "someone/else"},
        404,
        "model_not_found",
        "model",
        "smollm2-135m-instruct",
    ),
    BadInput(
        "body over LLM_MAX_REQUEST_BYTES",
        {"prompt": "x" * 70_000},
        413,
        "request_too_large",
        says="the body is larger than LLM_MAX_REQUEST_BYTES=65536 bytes",
    ),
    BadInput(
        "text/plain body",
        {"prompt": "hi"},
        415,
        "unsupported_media_type",
        says="application/json",
        headers={"content-type": "text/plain"},
    ),
    BadInput(
        "form-encoded body",
        b"prompt=hi",
        415,
        "unsupported_media_type",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    BadInput(
        "JSON in latin-1",
        {"prompt": "hi"},
        415,
        "unsupported_media_type",
        says="UTF-8",
        headers={"content-type": "application/json; charset=latin-1"},
    ),
]


def assert_error(response, status: int, type_: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_, error
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert "Traceback" not in response.text
    return error


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
async def test_bad_input(client, bad: BadInput) -> None:
    headers = bad.headers or JSON
    for path in (bad.path, bad.path + "/stream"):  # a stream refuses bad input with the same HTTP error
        response = await client.post(path, content=bad.content(), headers=headers)
        error = assert_error(response, bad.status, bad.type, bad.param)
        assert bad.says.lower() in error["message"].lower(), error
        assert response.headers["content-type"].startswith("application/json")


async def test_errors_do_not_echo_the_prompt(client) -> None:
    secret = "zebra-unicorn-" * 300
    for body in ({"prompt": secret * 2}, {"prompt": secret + "\u0000"}, {"prompt": secret, "top_k": -1}):
        response = await client.post("/api/generate", json=body)
        assert response.status_code >= 400
        assert "zebra-unicorn" not in response.text


async def test_unknown_route_and_wrong_method(client) -> None:
    assert_error(await client.get("/api/nothing"), 404, "not_found")
    error = assert_error(await client.get("/api/generate"), 405, "method_not_allowed")
    stated, allowed = error["message"].split("; allowed: ")
    assert stated == "GET is not allowed on /api/generate" and "POST" in allowed.split(", "), error


async def test_every_invalid_field_is_named_at_once_each_with_its_rule(client) -> None:
    body = {"prompt": 5, "max_tokens": "ten", "temperature": 9, "stream": 0, "colour": "red"}
    response = await client.post("/api/generate", json=body)
    error = assert_error(response, 422, INVALID, "prompt")
    assert [(e["param"], e["message"]) for e in error["errors"]] == [
        ("prompt", "prompt: must be a string that is not empty"),
        ("max_tokens", "max_tokens: must be an integer >= 1"),
        ("temperature", "temperature: must be a number >= 0 and <= 2"),
        ("stream", "stream: must be true or false"),
        ("colour", "colour: unknown field; accepted fields are " + error["errors"][4]["message"].split("are ", 1)[1]),
    ], error
    assert error["message"].startswith("5 fields are invalid: prompt: must be"), error
    assert all(e["message"] in error["message"] for e in error["errors"]), error

    # Nested: each message's own fields, and a required field that is missing, in one answer.
    chat = {"messages": [{"role": "robot", "content": "hi"}, {"role": "user", "content": 3}], "top_k": -1}
    error = assert_error(await client.post("/api/chat", json=chat), 422, INVALID, "messages[0].role")
    assert [e["param"] for e in error["errors"]] == ["messages[0].role", "messages[1].content", "top_k"], error
    error = assert_error(await client.post("/api/generate", json={"seed": -1}), 422, INVALID, "seed")
    assert [e["param"] for e in error["errors"]] == ["seed", "prompt"], error
    assert error["errors"][1]["message"] == "prompt: is required", error

    # One invalid field keeps the one-field answer; a valid request on the same connection still works.
    error = assert_error(await client.post("/api/generate", json={"prompt": "hi", "top_p": 0}), 422, INVALID, "top_p")
    assert "errors" not in error and error["message"] == "top_p: must be a number > 0 and <= 1", error
    answered = await client.post("/api/generate", json={"prompt": "Hi", "max_tokens": 2})
    assert answered.status_code == 200, answered.text
