"""The generic tool format without a model: the incremental JSON reader, the parser fed in every split (a
stream must add up to the whole answer), the calls schema (each function's $defs moved under a prefix, refs
following) compiled by llama.cpp's grammar converter, and the history written as plain turns."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from llm_inference.engines.base import ChatMessage, ToolCall
from llm_inference.engines.constraints import json_schema_constraint
from llm_inference.engines.llamacpp.grammar import gbnf
from llm_inference.errors import UnsupportedParameter
from llm_inference.service.tools import ToolsInput, ToolSpec, collect
from llm_inference.service.tools.events import ToolEvent, ToolOutputParser, parse_whole
from llm_inference.service.tools.generic import GenericParser, NamedCallParser, constraint, plain_history
from llm_inference.service.tools.json_stream import JsonStream

CALLS = (
    '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Par\\u00eds \\"x\\"", "n": [1, 2.5e3, true]}},'
    ' {"name":"now","arguments":{}}]}'
)
ANSWER = '{"response": "Hello\\nworld \\ud83d\\ude00 ok"}'


def pieces(text: str, rng: random.Random) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        out.append(text[i : i + n])
        i += n
    return out


def fed(parser: ToolOutputParser, parts: list[str]) -> tuple[str, tuple[ToolCall, ...]]:
    events: list[ToolEvent] = []
    for part in parts:
        events += parser.feed(part)
    return collect([*events, *parser.finish()])


def without_ids(calls: tuple[ToolCall, ...]) -> list[tuple[str, str]]:
    return [(call.name, call.arguments) for call in calls]


@pytest.mark.parametrize("text", [CALLS, ANSWER])
def test_the_parser_reads_the_same_in_every_split(text: str) -> None:
    whole_text, whole_calls = parse_whole(GenericParser(), text)
    rng = random.Random(7)
    splits = [list(text)] + [pieces(text, rng) for _ in range(30)]
    splits += [[text[:cut], text[cut:]] for cut in range(1, len(text))]
    for parts in splits:
        got_text, got_calls = fed(GenericParser(), parts)
        assert (got_text, without_ids(got_calls)) == (whole_text, without_ids(whole_calls)), parts


def test_calls_and_answers_read_back_as_json_says() -> None:
    text, calls = parse_whole(GenericParser(), CALLS)
    assert text == ""
    assert [c.name for c in calls] == ["get_weather", "now"]
    assert json.loads(calls[0].arguments) == json.loads(CALLS)["tool_calls"][0]["arguments"]
    assert calls[1].arguments == "{}"
    assert parse_whole(GenericParser(), ANSWER) == (json.loads(ANSWER)["response"], ())


def test_a_cut_answer_keeps_what_was_written() -> None:
    text, calls = parse_whole(GenericParser(), '{"response": "Hel')
    assert (text, calls) == ("Hel", ())
    _, calls = parse_whole(GenericParser(), CALLS[:60])
    assert [c.name for c in calls] == ["get_weather"] and calls[0].arguments == CALLS[CALLS.index('{"city') : 60]


def test_text_that_is_not_json_is_given_back_whole() -> None:
    assert parse_whole(GenericParser(), "Sure! Here it is") == ("Sure! Here it is", ())


def test_a_named_call_is_the_whole_text() -> None:
    text, [call] = fed(NamedCallParser("f"), ['{"a"', ": 1}"])
    assert (text, call.name, call.arguments) == ("", "f", '{"a": 1}')
    assert collect(NamedCallParser("f").finish())[1][0].arguments == ""


def test_json_stream_reports_strings_raw_values_and_ends() -> None:
    stream = JsonStream(capture=lambda path: path == ("a",))
    first = stream.feed('{"a": [1, {"b": "x\\ty"}], "c": "d')
    rest = stream.feed('e"}')
    assert "".join(text for path, text in first.raw + rest.raw if path == ("a",)) == '[1, {"b": "x\\ty"}]'
    assert [(p, s) for p, s in first.strings + rest.strings] == [(("a", 1, "b"), "x\ty"), (("c",), "d"), (("c",), "e")]
    assert (("c",), "de") in rest.ended and not stream.broken


NESTED: dict[str, Any] = {
    "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    "type": "object",
    "properties": {"home": {"$ref": "#/$defs/Address"}, "work": {"$ref": "#/$defs/Address"}},
    "required": ["home"],
}


def tools(*specs: ToolSpec, mode: str = "required", parallel: bool = True) -> ToolsInput:
    return ToolsInput(specs, mode, specs[0].name if mode == "function" else None, parallel)  # type: ignore[arg-type]


def test_each_functions_defs_move_under_a_prefix_and_the_grammar_compiles() -> None:
    offered = tools(
        ToolSpec("a", None, NESTED, "tools[0].function.parameters"),
        ToolSpec("b", None, NESTED, "tools[1].function.parameters"),
        ToolSpec("c", None, None, "tools[2].function.parameters"),
    )
    for mode in ("auto", "required"):
        found = constraint(tools(*offered.tools, mode=mode))
        assert found.schema is not None
        schema = json.loads(found.schema)
        assert set(schema["$defs"]) == {"f0_Address", "f1_Address"}
        assert '"#/$defs/f1_Address"' in found.schema and '"#/$defs/Address"' not in found.schema
        assert "root ::=" in gbnf(found)


def test_parallel_false_allows_exactly_one_call() -> None:
    found = constraint(tools(ToolSpec("a", None, None, "p"), parallel=False))
    assert found.schema is not None
    calls = json.loads(found.schema)["properties"]["tool_calls"]
    assert (calls["minItems"], calls["maxItems"]) == (1, 1)


def test_a_parameter_schema_outside_the_subset_is_refused_naming_the_keyword() -> None:
    bad = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}
    with pytest.raises(UnsupportedParameter) as refused:
        constraint(tools(ToolSpec("a", None, bad, "tools[0].function.parameters")))
    assert refused.value.param == "tools[0].function.parameters.properties.n.multipleOf"


def test_history_turns_calls_into_json_and_results_into_one_user_turn() -> None:
    history = plain_history(
        [
            ChatMessage("user", "weather?"),
            ChatMessage("assistant", "", (ToolCall("c1", "w", '{"city": "Paris"}'), ToolCall("c2", "w", "{}"))),
            ChatMessage("tool", "18 C", tool_call_id="c1"),
            ChatMessage("tool", "20 C", tool_call_id="c2"),
        ]
    )
    assert [m.role for m in history] == ["user", "assistant", "user"]
    assert json.loads(history[1].content) == {
        "tool_calls": [{"name": "w", "arguments": {"city": "Paris"}}, {"name": "w", "arguments": {}}]
    }
    assert history[2].content.splitlines() == ["Function result: w returned: 18 C", "Function result: w returned: 20 C"]


def test_without_tools_on_offer_calls_are_told_in_words() -> None:
    history = plain_history([ChatMessage("assistant", "", (ToolCall("c1", "w", '{"city": "Paris"}'),))], False)
    assert history[0].content == '(I called w with {"city": "Paris"}.)'


def test_under_auto_a_response_format_constrains_the_answer_branch() -> None:
    person = {
        "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}, "required": ["kind"]}},
        "type": "object",
        "properties": {"name": {"type": "string"}, "pet": {"$ref": "#/$defs/Pet"}},
        "required": ["name", "pet"],
    }
    offered = tools(ToolSpec("a", None, NESTED, "tools[0].function.parameters"), mode="auto")
    found = constraint(offered, json_schema_constraint(person, "response_format.json_schema.schema"))
    assert found.schema is not None
    schema = json.loads(found.schema)
    assert set(schema["$defs"]) == {"f0_Address", "r_Pet"}
    answer = schema["anyOf"][1]["properties"]["response"]
    assert answer["properties"]["pet"] == {"$ref": "#/$defs/r_Pet"}
    assert "root ::=" in gbnf(found)
    text = '{"response": {"name": "Ann", "pet": {"kind": "cat"}}}'
    for parts in ([text], list(text)):
        content, calls = fed(GenericParser(structured_answer=True), parts)
        assert json.loads(content) == {"name": "Ann", "pet": {"kind": "cat"}} and calls == ()


def test_a_user_turn_that_reads_like_a_result_is_not_joined_to_one() -> None:
    history = plain_history(
        [ChatMessage("tool", "18 C", tool_call_id="c1"), ChatMessage("user", "Function result: as you see")]
    )
    assert [m.content for m in history] == [
        "Function result: the function returned: 18 C",
        "Function result: as you see",
    ]
