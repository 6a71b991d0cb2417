"""OpenAI's error shape and status on /v1, the SDK's typed exceptions, and /api's own shape left unchanged.

Many of these errors happen before any /v1 handler runs (JSON decoding, validation, an unknown route, a body
too large, the key and rate-limit middleware), so each is checked on the wire as well as through the SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.api.openai.conftest import MODEL, SERVER_ENV, sdk
from tests.server import ServerProcess

pytestmark = pytest.mark.model

HI = [{"role": "user", "content": "Hi"}]
KEY = "k" * 20 + "-openai-key"


def assert_openai_error(response: httpx.Response, status: int, type_: str, code: str, param: str | None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert (error["type"], error["code"], error["param"]) == (type_, code, param), error
    return str(error["message"])


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"n": 9}, "n"),  # over LLM_MAX_CHOICES=8
        ({"temperature": 2.5}, "temperature"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"extra_body": {"min_p": 1.5}}, "min_p"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"maxProperties": 2}}}],
                "tool_choice": "required",
            },
            "tools[0].function.parameters.maxProperties",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "regex", "regex": "a+"}}, "response_format.type"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"pattern": "a+"}}}},
            "response_format.json_schema.schema.pattern",
        ),
        ({"logit_bias": {"the": 5}}, "logit_bias"),
        ({"logit_bias": {"49152": 5}}, "logit_bias"),  # the embedded model's vocabulary ends at 49151
        ({"logit_bias": {"42": 101}}, "logit_bias"),
        ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty"),
        ({"max_tokens": 9000}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ],
)
def test_a_field_that_cannot_be_honoured_is_a_bad_request_naming_it(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**{"model": MODEL, "messages": HI, "max_tokens": 2, **fields})
    assert refused.value.status_code == 400 and refused.value.param == param
    assert refused.value.type == "invalid_request_error"
    assert param in refused.value.message


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"store": True, "unknown_thing": 1}, "unknown_thing", "invalid_parameter"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0].type",
            "unsupported_parameter",
        ),
        ({"messages": [{"role": "tool", "content": "1"}]}, "messages[0].tool_call_id", "invalid_parameter"),
        ({"messages": [{"role": "wizard", "content": "1"}]}, "messages[0].role", "invalid_parameter"),
        ({"messages": []}, "messages", "invalid_parameter"),
        ({"model": None}, "model", "invalid_parameter"),
    ],
)
def test_bad_chat_bodies(http: httpx.Client, body: dict[str, Any], param: str, code: str) -> None:
    response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": HI, **body})
    assert_openai_error(response, 400, "invalid_request_error", code, param)


def test_several_invalid_fields_are_named_in_one_openai_error(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 0, "temperature": "hot", "top_p": 3}
    message = assert_openai_error(
        http.post("/v1/chat/completions", json=body), 400, "invalid_request_error", "invalid_parameter", "max_tokens"
    )
    assert message.startswith("3 fields are invalid: max_tokens: must be an integer >= 1; "), message
    assert "temperature: must be a number" in message and "top_p: must be a number > 0 and <= 1" in message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": ["a", 1]}, "prompt"),  # strings and token ids mixed
        ({"prompt": []}, "prompt"),
        ({"prompt": ["a", ""]}, "prompt[1]"),
        ({"prompt": [1, 999_999]}, "prompt"),  # not a token id of the model
        ({"prompt": ["a"] * 9}, "prompt"),  # more choices than LLM_MAX_CHOICES=8
        ({"prompt": ["a", "b"], "n": 5}, "prompt"),
        ({"max_tokens": 0}, "max_tokens"),  # only with echo
        ({"logprobs": 6}, "logprobs"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 2}, "best_of"),
    ],
)
def test_bad_completion_bodies(client: openai.OpenAI, fields: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(**{"model": MODEL, "prompt": "Hi", "max_tokens": 2, **fields})
    assert refused.value.param == param


def test_errors_before_the_handler_have_openais_shape(http: httpx.Client, server: ServerProcess) -> None:
    assert "not valid JSON" in assert_openai_error(
        http.post("/v1/chat/completions", content=b'{"model": '), 400, "invalid_request_error", "invalid_json", None
    )
    assert_openai_error(http.post("/v1/completions", content=b""), 400, "invalid_request_error", "invalid_json", None)
    # On a fresh connection: the server answers 413 before reading the body, then closes the connection.
    big = httpx.post(f"{server.url}/v1/completions", json={"model": MODEL, "prompt": "x" * 70_000}, timeout=60)
    assert_openai_error(big, 413, "invalid_request_error", "request_too_large", None)
    form = http.post("/v1/completions", content=b"prompt=hi", headers={"content-type": "text/plain"})
    assert_openai_error(form, 415, "invalid_request_error", "unsupported_media_type", None)
    assert_openai_error(http.get("/v1/nothing"), 404, "invalid_request_error", "not_found", None)
    wrong_method = http.get("/v1/chat/completions")
    assert_openai_error(wrong_method, 405, "invalid_request_error", "method_not_allowed", None)
    assert "POST" in wrong_method.headers["allow"]


def test_the_native_api_keeps_its_own_error_shape(http: httpx.Client) -> None:
    response = http.post("/api/chat", json={"messages": HI, "temperature": 3})
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "type": "invalid_parameter",
            "param": "temperature",
            "message": "temperature: must be a number >= 0 and <= 2",
        }
    }
    assert set(http.get("/api/nothing").json()["error"]) == {"type", "message", "param"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # No model can load from here: keys and rate limits are decided before any engine is asked.
    env = {
        **SERVER_ENV,
        "LLM_API_KEYS": KEY,
        "LLM_RATE_LIMIT_PER_MINUTE": "3",
        "LLM_ALLOWED_MODELS": "/nonexistent/model.gguf",
    }
    with ServerProcess(env, log_path=tmp_path_factory.mktemp("guarded") / "server.log") as process:
        process.wait_for("/health/live", 200)
        yield process


def test_a_wrong_key_is_an_authentication_error(guarded: ServerProcess) -> None:
    with sdk(guarded.url, api_key="w" * 24) as wrong, pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert refused.value.type == "authentication_error"
    assert refused.value.response.headers["www-authenticate"].startswith("Bearer")
    assert KEY not in refused.value.response.text


def test_past_the_rate_limit_is_a_rate_limit_error(guarded: ServerProcess) -> None:
    with sdk(guarded.url, api_key=KEY) as keyed:
        with pytest.raises(openai.RateLimitError) as limited:  # the budget of 3 is spent in the loop
            for _ in range(4):
                assert keyed.models.list().data
        assert limited.value.code == "rate_limit_exceeded" and limited.value.type == "rate_limit_error"
        assert int(limited.value.response.headers["retry-after"]) >= 1
