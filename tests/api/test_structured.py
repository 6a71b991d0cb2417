"""Structured outputs on /api (the `format` field) and /v1 (`response_format`), in-process on the real model:
JSON that parses and matches its schema, many samples at temperature > 0, plain and streamed; refusals."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest
from litestar.testing import AsyncTestClient

from tests.api.sse import joined_text, parse_events
from tests.telemetry.scrape import Scrape

pytestmark = pytest.mark.model

Client = AsyncTestClient  # type: ignore[type-arg]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "mood": {"enum": ["happy", "sad"]},
    },
    "required": ["name", "age", "mood"],
    "additionalProperties": False,
}
ASK_PERSON = [{"role": "user", "content": "Describe a person as JSON with name, age and mood."}]
RUNS = 20


async def test_api_chat_format_json_parses(client: Client) -> None:
    body = {"messages": ASK_PERSON, "format": "json", "max_tokens": 64, "temperature": 0}
    answer = (await client.post("/api/chat", json=body)).json()
    assert answer["finish_reason"] == "stop", answer
    assert isinstance(json.loads(answer["message"]["content"]), dict)


async def test_api_chat_schema_matches_in_many_sampled_runs(client: Client) -> None:
    async def one(seed: int) -> dict[str, Any]:
        body = {"messages": ASK_PERSON, "format": PERSON, "max_tokens": 64, "temperature": 1.0, "seed": seed}
        response = await client.post("/api/chat", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    answers = await asyncio.gather(*(one(seed) for seed in range(RUNS)))
    for answer in answers:
        assert answer["finish_reason"] == "stop", answer
        jsonschema.validate(json.loads(answer["message"]["content"]), PERSON)


async def test_api_generate_stream_schema_matches(client: Client) -> None:
    for seed in range(5):
        body = {"prompt": "A person:", "format": PERSON, "max_tokens": 64, "temperature": 0.8, "seed": seed}
        response = await client.post("/api/generate/stream", json=body)
        assert response.status_code == 200, response.text
        events = parse_events(response.text)
        assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "stop", events[-1]
        jsonschema.validate(json.loads(joined_text(events)), PERSON)


async def test_unsupported_keyword_is_refused_naming_its_path(client: Client) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "string", "not": {"const": "a"}}}}
    response = await client.post("/api/generate", json={"prompt": "x", "format": schema})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "unsupported_parameter"
    assert error["param"] == "format.properties.x.not"
    assert "format.properties.x.not" in error["message"]


async def test_v1_unsupported_keyword_is_refused_in_openais_shape(client: Client) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}
    body = {
        "model": "smollm2-135m-instruct",
        "messages": ASK_PERSON,
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "response_format.json_schema.schema.properties.n.minimum"
    assert error["type"] == "invalid_request_error" and error["code"] == "unsupported_parameter"


async def test_v1_completions_response_format(client: Client) -> None:
    body = {
        "model": "smollm2-135m-instruct",
        "prompt": "A person:",
        "max_tokens": 48,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
    }
    response = await client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    jsonschema.validate(json.loads(choice["text"]), PERSON)


async def test_constrained_requests_are_counted_and_their_compile_timed(client: Client) -> None:
    model = {"model": "smollm2-135m-instruct", "backend": "llamacpp"}
    before = Scrape((await client.get("/metrics")).text)
    for fmt in ("json", PERSON):
        body = {"prompt": "A person:", "format": fmt, "max_tokens": 48, "temperature": 0}
        assert (await client.post("/api/generate", json=body)).status_code == 200
    after = Scrape((await client.get("/metrics")).text)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **model, **labels) - before.value(name, **model, **labels)

    assert delta("llm_constrained_requests_total", kind="json_object") == 1
    assert delta("llm_constrained_requests_total", kind="json_schema") == 1
    assert delta("llm_constraint_compile_seconds_count") == 2
    assert 0 < delta("llm_constraint_compile_seconds_sum") < 2


async def test_ignore_eos_cannot_go_past_the_json(client: Client) -> None:
    body = {"prompt": "x", "format": "json", "ignore_eos": True}
    response = await client.post("/api/generate", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "ignore_eos"


async def test_odd_property_names_and_values_are_written_escaped(client: Client) -> None:
    schema = {
        "type": "object",
        "properties": {'say "hi"\\': {"enum": ["a\\b", 'c"d']}, "n": {"type": "integer"}},
        "required": ['say "hi"\\', "n"],
    }
    for seed in range(3):
        body = {"prompt": "A pair:", "format": schema, "max_tokens": 48, "temperature": 0.7, "seed": seed}
        answer = (await client.post("/api/generate", json=body)).json()
        assert answer["finish_reason"] == "stop", answer
        jsonschema.validate(json.loads(answer["text"]), schema)


async def test_a_recursive_reference_at_the_root(client: Client) -> None:
    node = {
        "type": "object",
        "properties": {
            "name": {"enum": ["leaf", "branch"]},
            "child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
        },
        "required": ["name", "child"],
    }
    schema = {"$ref": "#/$defs/Node", "$defs": {"Node": node}}
    # Examples in the prompt keep the greedy answer from nesting until max_tokens.
    shown = '{"name": "leaf", "child": null}\n{"name": "branch", "child": {"name": "leaf", "child": null}}\n'
    body = {"prompt": shown, "format": schema, "max_tokens": 96, "temperature": 0}
    answer = (await client.post("/api/generate", json=body)).json()
    assert answer["finish_reason"] == "stop", answer
    jsonschema.validate(json.loads(answer["text"]), schema)


async def test_a_batch_shares_its_format(client: Client) -> None:
    body = {"prompts": ["A person:", "Another person:"], "format": PERSON, "max_tokens": 48, "temperature": 0}
    response = await client.post("/api/batch/generate", json=body)
    assert response.status_code == 200, response.text
    for result in response.json()["results"]:
        assert result["finish_reason"] == "stop", result
        jsonschema.validate(json.loads(result["text"]), PERSON)
