"""Structured outputs through the real openai SDK and LangChain against a real Granian process: parsed Pydantic
objects, JSON mode, schemas matched in many sampled runs (plain and streamed), /v1/completions, refusals, and
a hostile schema refused quickly while another stream goes on."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.api.openai.conftest import MODEL
from tests.server import ServerProcess

pytestmark = pytest.mark.model

RUNS = 20
ASK = [{"role": "user", "content": "Describe a person as JSON with a name and an age."}]
PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer"},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 2},
        "nickname": {"anyOf": [{"type": "string", "maxLength": 8}, {"type": "null"}]},
    },
    "required": ["name", "age", "pets", "nickname"],
    "additionalProperties": False,
}
PERSON_FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int


def test_parse_returns_a_pydantic_object(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=ASK,
        response_format=Person,
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, Person), message.content


def test_json_object_returns_parseable_json(client: openai.OpenAI) -> None:
    # Greedy: JSON mode bounds no string or object, so a sampled answer may run past max_tokens (then cut).
    completion = client.chat.completions.create(
        model=MODEL, messages=ASK, response_format={"type": "json_object"}, max_tokens=64, temperature=0
    )
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_json_schema_matches_in_many_sampled_runs(client: openai.OpenAI) -> None:
    """RUNS requests, ten at a time (the engine decodes them in one batch), at temperature 1. max_tokens leaves
    room for the longest instance the bounds allow, so each one ends with its JSON."""

    patient = client.with_options(timeout=300)  # a busy machine makes the slowest of 20 slow

    def one(seed: int) -> tuple[str | None, str]:
        completion = patient.chat.completions.create(
            model=MODEL, messages=ASK, response_format=PERSON_FORMAT, max_tokens=128, temperature=1.0, seed=seed
        )
        return completion.choices[0].finish_reason, completion.choices[0].message.content or ""

    # As many at once as the server decodes at once (LLM_MAX_CONCURRENT_REQUESTS, 10): none waits in its queue.
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(RUNS)))  # a failed request raises here
    for finish_reason, text in results:
        assert finish_reason == "stop", text
        jsonschema.validate(json.loads(text), PERSON)


def test_streamed_json_schema_matches(client: openai.OpenAI) -> None:
    for seed in range(5):
        stream = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            response_format=PERSON_FORMAT,
            max_tokens=128,
            temperature=0.9,
            seed=seed,
            stream=True,
        )
        chunks = list(stream)
        assert chunks[-1].choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads("".join(c.choices[0].delta.content or "" for c in chunks)), PERSON)


def test_completions_take_response_format(client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model=MODEL,
        prompt="A person:",
        max_tokens=128,
        temperature=0.5,
        seed=1,
        extra_body={"response_format": PERSON_FORMAT},
    )
    assert completion.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(completion.choices[0].text), PERSON)


def test_langchain_with_structured_output(server: ServerProcess) -> None:
    llm = ChatOpenAI(
        model=MODEL,
        base_url=server.url + "/v1",
        api_key="none",
        temperature=0,
        max_tokens=48,
        max_retries=0,  # type: ignore[arg-type]
    )
    person = llm.with_structured_output(Person, method="json_schema").invoke(ASK)
    assert isinstance(person, Person)
    # JSON mode constrains to JSON, not to a schema: a dict schema asks LangChain for the parsed JSON as is.
    anything = llm.with_structured_output(PERSON | {"title": "person"}, method="json_mode").invoke(ASK)
    assert isinstance(anything, dict)


@pytest.mark.parametrize(
    ("schema", "param"),
    [
        ({"type": "object", "properties": {"x": {"not": {"type": "null"}}}}, "properties.x.not"),
        ({"type": "integer", "minimum": 0}, "minimum"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
        ({"type": "string", "format": "email"}, "format"),
        ({"$ref": "https://example.com/schema.json"}, "$ref"),
        ({"allOf": [{"type": "object"}]}, "allOf"),
        ({"type": "array", "items": {"type": "integer"}, "maxItems": 10_000}, "maxItems"),
    ],
)
def test_unsupported_schemas_are_refused_naming_the_keyword(
    client: openai.OpenAI, schema: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        )
    assert refused.value.param == f"response_format.json_schema.schema.{param}"
    assert refused.value.code == "unsupported_parameter"
    assert f"response_format.json_schema.schema.{param}" in refused.value.message


def _deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


# Past the grammar's size limit: 400 properties, each a string of up to 256 characters.
HUGE = {"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 256} for i in range(400)}}


@pytest.mark.parametrize(("schema", "param"), [(_deep(200), "format"), (HUGE, "format")])
def test_a_hostile_schema_is_refused_quickly_while_another_stream_goes_on(
    http: httpx.Client, schema: dict[str, Any], param: str
) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 120, "ignore_eos": True, "temperature": 0}
    with http.stream("POST", "/api/generate/stream", json=body) as stream:
        lines = stream.iter_lines()
        deltas = 0
        while deltas < 3:
            deltas += next(lines).startswith('data: {"type":"delta"')
        started = time.monotonic()
        refused = http.post("/api/generate", json={"prompt": "x", "format": schema})
        refused_after = time.monotonic() - started
        after = [line for line in lines if line.startswith("data: ")]
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["type"] == "unsupported_parameter" and error["param"].startswith(param)
    assert refused_after < 5, refused_after
    assert sum('"type":"delta"' in line for line in after) > 50  # the other stream went on to its end
    assert '"finish_reason":"length"' in after[-2]
