"""The structured-output subset check and its llama.cpp grammar, without a model: what is accepted (and its
canonical form), what is refused with which path, the bounds, and the grammar's JSON-safe strings."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import BaseModel, Field

from llm_inference.engines.constraints import (
    MAX_DEPTH,
    OutputConstraint,
    json_object_constraint,
    json_schema_constraint,
)
from llm_inference.engines.llamacpp.grammar import MAX_GRAMMAR_CHARS, gbnf
from llm_inference.errors import InvalidParameter, UnsupportedParameter


class Pet(BaseModel):
    kind: str = Field(description="cat or dog", max_length=10)


class Owner(BaseModel):
    name: str
    age: int | None = None
    pets: list[Pet] = Field(max_length=3)


def test_a_pydantic_schema_is_accepted_and_its_annotations_dropped() -> None:
    constraint = json_schema_constraint(Owner.model_json_schema(), "format")
    canonical = json.loads(constraint.schema or "")
    assert "title" not in json.dumps(canonical)  # annotations go; property order stays
    assert list(canonical["properties"]) == ["name", "age", "pets"]
    assert canonical["properties"]["pets"]["maxItems"] == 3
    assert canonical["$defs"]["Pet"]["properties"]["kind"] == {"type": "string", "maxLength": 10}
    assert constraint.cache_key == json_schema_constraint(Owner.model_json_schema(), "other").cache_key


@pytest.mark.parametrize(
    ("schema", "path", "error"),
    [
        ({"type": "object", "properties": {"x": {"not": {}}}}, "f.properties.x.not", UnsupportedParameter),
        ({"type": "string", "pattern": "a+"}, "f.pattern", UnsupportedParameter),
        ({"type": "number", "minimum": 1}, "f.minimum", UnsupportedParameter),
        ({"type": "string", "format": "email"}, "f.format", UnsupportedParameter),
        ({"type": "array", "items": {"type": "string"}, "maxItems": 1000}, "f.maxItems", UnsupportedParameter),
        ({"type": "string", "maxLength": 100_000}, "f.maxLength", UnsupportedParameter),
        ({"enum": list(range(1000))}, "f.enum", UnsupportedParameter),
        ({"$ref": "#/$defs/Missing", "$defs": {}}, "f.$ref", InvalidParameter),
        ({"$ref": "other.json#/x"}, "f.$ref", UnsupportedParameter),
        ({"anyOf": [{"type": "string"}], "maxLength": 3}, "f.maxLength", UnsupportedParameter),
        ({"type": ["string", "null"], "maxLength": 3}, "f.maxLength", UnsupportedParameter),
        ({"type": "object", "properties": {}, "required": ["x"]}, "f.required[0]", UnsupportedParameter),
        ({"type": "string", "properties": {}}, "f.properties", UnsupportedParameter),
        ({"type": "text"}, "f.type", InvalidParameter),
        ({"anyOf": []}, "f.anyOf", InvalidParameter),
        ({"type": "array", "items": True}, "f.items", InvalidParameter),
        ("object", "f", InvalidParameter),
    ],
)
def test_refusals_name_the_keyword_path(schema: Any, path: str, error: type[Exception]) -> None:
    with pytest.raises(error) as refused:
        json_schema_constraint(schema, "f")
    assert type(refused.value) is error
    assert refused.value.param == path  # type: ignore[attr-defined]
    assert str(refused.value).startswith(path + ":")


def test_nesting_and_size_are_bounded() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(MAX_DEPTH + 1):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(UnsupportedParameter, match="deeper than"):
        json_schema_constraint(schema, "f")
    many = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(600)}}
    with pytest.raises(UnsupportedParameter, match="subschemas"):
        json_schema_constraint(many, "f")


def _rule(grammar: str, name: str) -> str:
    match = re.search(rf"^{name} ::= (.*)$", grammar, flags=re.M)
    assert match, grammar
    return match[1]


def test_the_grammar_keeps_control_characters_out_of_strings() -> None:
    """JSON forbids raw control characters in strings; the converter's own rule would let a newline through."""
    for constraint in (json_object_constraint("f"), json_schema_constraint({"type": "string", "maxLength": 3}, "f")):
        assert "\\x00-\\x1F" in _rule(gbnf(constraint), "char")


def test_a_grammar_past_the_size_limit_is_refused() -> None:
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 256} for i in range(400)}}
    with pytest.raises(UnsupportedParameter, match=f"limit of {MAX_GRAMMAR_CHARS}") as refused:
        gbnf(json_schema_constraint(huge, "format"))
    assert refused.value.param == "format"


def test_json_object_needs_no_schema() -> None:
    assert json_object_constraint("response_format") == OutputConstraint("json_object", None, "response_format")
    assert _rule(gbnf(json_object_constraint("x")), "root").startswith("object")


def test_names_and_values_with_quotes_and_backslashes_are_escaped_in_the_grammar() -> None:
    schema = {"type": "object", "properties": {'a"b\\c': {"const": "x\n"}}, "required": ['a"b\\c']}
    grammar = gbnf(json_schema_constraint(schema, "f"))
    # The JSON text "a\"b\\c" as a GBNF literal: every quote and backslash escaped once more.
    assert '"\\"a\\\\\\"b\\\\\\\\c\\""' in grammar, grammar


def test_a_reference_at_the_root_resolves_the_references_below_it() -> None:
    node = {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}
    grammar = gbnf(json_schema_constraint({"$ref": "#/$defs/Node", "$defs": {"Node": node}}, "f"))
    assert re.search(r"^root ::= ", grammar, flags=re.M) and "Node" in grammar


async def test_a_compile_past_its_time_is_refused_and_what_it_built_is_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compile runs on a worker thread: the request gets its 400 at the deadline, the event loop is free
    meanwhile, and the sampler the late thread still builds is freed (llama.cpp calls replaced by spies)."""
    import asyncio
    import threading
    import time

    from llm_inference.engines.llamacpp import grammar

    release = threading.Event()
    freed: list[object] = []

    def slow_gbnf(constraint: OutputConstraint) -> str:
        release.wait(5)
        return 'root ::= "{}"'

    monkeypatch.setattr(grammar, "COMPILE_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(grammar, "gbnf", slow_gbnf)
    monkeypatch.setattr(grammar.llama_cpp, "llama_sampler_init_grammar", lambda *args: "a sampler")
    monkeypatch.setattr(grammar.llama_cpp, "llama_sampler_free", freed.append)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    with pytest.raises(UnsupportedParameter, match=r"took longer than 0\.2 s") as refused:
        await grammar.compile_grammar(None, json_object_constraint("format"))
    assert time.monotonic() - started < 1 and ticks >= 10  # the loop kept running while it waited
    assert refused.value.param == "format"
    release.set()
    for _ in range(100):
        if freed:
            break
        await asyncio.sleep(0.01)
    ticker.cancel()
    assert freed == ["a sampler"]
