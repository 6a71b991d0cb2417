"""Tool calling for chat templates that take no tools (the embedded SmolLM2's among them): the tools are
described in a system message, and the answer is constrained to JSON, either `{"response": "..."}` or
`{"tool_calls": [{"name": ..., "arguments": {...}}]}`, so every call parses and its arguments match the
function's parameters (the approach llama.cpp's server takes for such templates). A conversation's earlier
calls and results are written in the same JSON, as plain turns any template can render.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llm_inference.engines.base import ChatMessage
from llm_inference.engines.constraints import OutputConstraint, json_schema_constraint
from llm_inference.service.tools.events import (
    ContentText,
    ToolArguments,
    ToolCallOpened,
    ToolEvent,
    new_call_id,
)
from llm_inference.service.tools.json_stream import JsonStream, Path
from llm_inference.service.tools.spec import ToolsInput

# Calls one answer may make when parallel calls are allowed: a bound, because small models asked for an open
# list of calls tend to repeat the same call until max_tokens.
MAX_PARALLEL_CALLS = 8
_CALLS_FORMAT = '{"tool_calls": [{"name": <a function\'s name>, "arguments": <an object of its parameters>}]}'
_RESULT_PREFIX = "Function result: "
_STRUCTURED_ANSWER_FORMAT = '{"response": <your answer, as the JSON asked for>}'
_ANSWER_FORMAT = '{"response": <your answer, as a string>}'


def system_text(tools: ToolsInput, structured_answer: bool = False) -> str:
    listing = "\n".join(json.dumps(tool.definition()["function"], ensure_ascii=False) for tool in tools.tools)
    if tools.mode == "function":
        how = f"Call the function {tools.function}: reply with only its arguments, as one JSON object."
    elif tools.mode == "required":
        how = f"Call one or more of them: reply with only {_CALLS_FORMAT}."
    else:
        answer = _STRUCTURED_ANSWER_FORMAT if structured_answer else _ANSWER_FORMAT
        how = f"To call functions, reply with only {_CALLS_FORMAT}. To answer directly, reply with only {answer}."
    return f"You can call these functions, given as JSON Schema:\n{listing}\n{how}"


def with_system_text(messages: Sequence[ChatMessage], text: str) -> list[ChatMessage]:
    """The tools' description joined to the first system message, or in one of its own before the rest."""
    if messages and messages[0].role == "system":
        first = messages[0]
        return [ChatMessage("system", f"{first.content}\n\n{text}" if first.content else text), *messages[1:]]
    return [ChatMessage("system", text), *messages]


def plain_history(messages: Sequence[ChatMessage], calls_as_json: bool = True) -> list[ChatMessage]:
    """Earlier calls as the JSON the model is asked to write, and their results as a user turn in words
    (consecutive results joined), so that templates insisting on user/assistant alternation still render.
    Without tools on offer the calls are told in words too: shown its own JSON, a model answers in JSON."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    out: list[ChatMessage] = []
    previous: ChatMessage | None = None
    for message in messages:
        if message.tool_calls:
            if calls_as_json:
                calls = [{"name": c.name, "arguments": _json_or_text(c.arguments)} for c in message.tool_calls]
                text = json.dumps({"tool_calls": calls}, ensure_ascii=False)
            else:
                text = "\n".join(f"(I called {c.name} with {c.arguments}.)" for c in message.tool_calls)
            out.append(ChatMessage("assistant", f"{message.content}\n{text}" if message.content else text))
        elif message.role == "tool":
            # In words rather than JSON: shown JSON results, a small model answers in JSON of the same shape.
            name = message.name or names.get(message.tool_call_id or "") or "the function"
            line = f"{_RESULT_PREFIX}{name} returned: {message.content}"
            if previous is not None and previous.role == "tool":  # results of one round: one user turn
                out[-1] = ChatMessage("user", f"{out[-1].content}\n{line}")
            else:
                out.append(ChatMessage("user", line))
        else:
            out.append(message)
        previous = message
    return out


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _nested(schema: dict[str, Any], prefix: str, definitions: dict[str, Any]) -> dict[str, Any]:
    """`schema` made ready to sit inside a larger one: its $defs moved into `definitions` (the larger schema's
    root) under `prefix`, and its $refs pointing there."""
    for key in ("$defs", "definitions"):
        for name, sub in schema.pop(key, {}).items():
            definitions[prefix + name] = _prefix_refs(sub, prefix)
    nested: dict[str, Any] = _prefix_refs(schema, prefix)
    return nested


def _prefix_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, list):
        return [_prefix_refs(item, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _prefix_refs(value, prefix) for key, value in node.items() if key != "$ref"}
    if isinstance(ref := node.get("$ref"), str):
        out["$ref"] = "#/$defs/" + prefix + ref.split("/")[-1]
    return out


def _object(name: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {name: value}, "required": [name], "additionalProperties": False}


def _calls(tools: ToolsInput, definitions: dict[str, Any]) -> dict[str, Any]:
    """`{"tool_calls": [...]}` with each item one of the functions: its name a constant, its arguments its
    parameters' schema."""
    options = []
    for index, tool in enumerate(tools.tools):
        arguments = _nested(tool.arguments_schema(), f"f{index}_", definitions)
        call = _object("name", {"const": tool.name})
        call["properties"]["arguments"] = arguments
        call["required"].append("arguments")
        options.append(call)
    calls: dict[str, Any] = {"type": "array", "items": options[0] if len(options) == 1 else {"anyOf": options}}
    calls |= {"minItems": 1, "maxItems": MAX_PARALLEL_CALLS if tools.parallel else 1}
    return _object("tool_calls", calls)


def _answer(answer: OutputConstraint | None, definitions: dict[str, Any]) -> dict[str, Any]:
    """`{"response": ...}`: text, or what the request's response_format asks for (then the answer's JSON)."""
    if answer is None:
        return _object("response", {"type": "string"})
    if answer.kind == "json_object" or answer.schema is None:
        return _object("response", {"type": "object"})
    return _object("response", _nested(json.loads(answer.schema), "r_", definitions))


def _with_definitions(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    return ({"$defs": definitions} if definitions else {}) | schema


def constraint(tools: ToolsInput, answer: OutputConstraint | None = None) -> OutputConstraint:
    """The answer's constraint: a named function's arguments; one or more calls (`required`); or under `auto`
    either calls or an answer, the answer matching `answer` (the request's response_format) where given."""
    if tools.mode == "function":
        tool = tools.named()
        return json_schema_constraint(tool.arguments_schema(), tool.param)
    definitions: dict[str, Any] = {}
    calls = _calls(tools, definitions)
    if tools.mode == "required":
        return json_schema_constraint(_with_definitions(calls, definitions), "tools")
    either = {"anyOf": [calls, _answer(answer, definitions)]}
    return json_schema_constraint(_with_definitions(either, definitions), "tools")


def _is_arguments(path: Path) -> bool:
    return len(path) == 3 and path[0] == "tool_calls" and path[2] == "arguments"


def _is_captured(path: Path) -> bool:
    return _is_arguments(path) or path == ("response",)


class GenericParser:
    """Reads `{"response": ...}` as answer text and `{"tool_calls": [...]}` as calls, while they are written.
    Text that is not of that shape (a generation cut short before its JSON began) is given back as answer text.
    With `structured_answer` (the request's response_format) the answer is JSON, passed on as written."""

    def __init__(self, structured_answer: bool = False) -> None:
        self._structured_answer = structured_answer
        self._json = JsonStream(capture=_is_captured if structured_answer else _is_arguments)
        self._names: dict[int, str] = {}
        self._held: dict[int, list[str]] = {}  # arguments written before their call's name
        self._seen: list[str] = []
        self._emitted = False

    def feed(self, text: str) -> list[ToolEvent]:
        self._seen.append(text)
        pieces = self._json.feed(text)
        events: list[ToolEvent] = []
        for path, piece in pieces.strings:
            if path == ("response",) and not self._structured_answer:
                events.append(ContentText(piece))
        for path, piece in pieces.raw:
            if path == ("response",):
                events.append(ContentText(piece))
                continue
            index = int(path[1])
            if index in self._names:
                events.append(ToolArguments(index, piece))
            else:  # its name comes later in the same text: passed on once the name is known
                self._held.setdefault(index, []).append(piece)
        for path, string in pieces.ended:
            if len(path) == 3 and path[0] == "tool_calls" and path[2] == "name" and string is not None:
                index = int(path[1])
                self._names[index] = string
                events.append(ToolCallOpened(index, new_call_id(), string))
                if held := self._held.pop(index, None):
                    events.append(ToolArguments(index, "".join(held)))
        self._emitted = self._emitted or bool(events)
        return events

    def finish(self) -> list[ToolEvent]:
        if self._json.broken and not self._emitted:
            return [ContentText("".join(self._seen))]
        return []


class NamedCallParser:
    """The whole answer is the named function's arguments."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._opened = False

    def feed(self, text: str) -> list[ToolEvent]:
        events: list[ToolEvent] = []
        if not self._opened:
            self._opened = True
            events.append(ToolCallOpened(0, new_call_id(), self._name))
        if text:
            events.append(ToolArguments(0, text))
        return events

    def finish(self) -> list[ToolEvent]:
        return [] if self._opened else self.feed("")
