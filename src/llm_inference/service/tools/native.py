"""Read the tool calls a model writes in its chat template's own format (Hermes/Qwen `<tool_call>` blocks, Llama 3.x
JSON, Mistral `[TOOL_CALLS]`) out of its text as it streams in. What does not parse as a call stays answer text."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable

from llm_inference.service.tools.events import (
    ContentText,
    ToolArguments,
    ToolCallOpened,
    ToolEvent,
    ToolOutputParser,
    new_call_id,
)

_JSON = json.JSONDecoder()

Call = tuple[str, str]  # function name, arguments as JSON object text


def _arguments_text(arguments: object) -> str | None:
    """A call's arguments as JSON object text; None when they are not an object."""
    if arguments is None:  # a function without parameters: models often leave them out
        return "{}"
    if isinstance(arguments, str):
        # Some models write the arguments as a JSON string holding the object, as OpenAI's wire format does.
        try:
            return arguments if isinstance(json.loads(arguments), dict) else None
        except ValueError:
            return None
    return json.dumps(arguments, ensure_ascii=False) if isinstance(arguments, dict) else None


def _call(value: object, tool_names: frozenset[str]) -> Call | None:
    """A call object `{"name": ..., "arguments": {...}}` (Llama writes "parameters"); None if `value` is not a call
    of one of `tool_names`: a model answering in JSON must not have its answer taken for a call."""
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    if not isinstance(name, str) or name not in tool_names:
        return None
    arguments = _arguments_text(value["arguments"] if "arguments" in value else value.get("parameters"))
    return None if arguments is None else (name, arguments)


def _json_prefix(text: str) -> tuple[object, str] | None:
    """The JSON value `text` starts with (after whitespace) and the text after it; None if it starts with none."""
    text = text.lstrip()
    try:
        value, end = _JSON.raw_decode(text)
    except ValueError:
        return None
    return value, text[end:]


def _held_from(text: str, marker: str) -> int:
    """Where the part of `text` that must wait for more starts: its trailing whitespace (it may precede a marker,
    and whitespace next to a call is layout) and a trailing piece that may be the start of `marker`."""
    cut = len(text)
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            cut -= size
            break
    return len(text[:cut].rstrip())


class _Parser:
    """What every format shares: numbering calls, and answer text without the layout whitespace around calls."""

    def __init__(self, tool_names: frozenset[str], new_id: Callable[[], str] = new_call_id) -> None:
        self._tool_names = tool_names
        self._new_id = new_id
        self._index = 0
        # Whitespace next to a call (the newline before a block, between two blocks, after the last) is layout:
        # held, and given out only when answer text comes on both sides of it, so a turn that only calls tools
        # does not answer "\n" and text around a call does not run together.
        self._at_call = False
        self._space = ""
        self._answered = False

    def _calls(self, calls: list[Call]) -> list[ToolEvent]:
        events: list[ToolEvent] = []
        for name, arguments in calls:
            events += [ToolCallOpened(self._index, self._new_id(), name), ToolArguments(self._index, arguments)]
            self._index += 1
        self._at_call = True
        return events

    def _content(self, text: str) -> list[ToolEvent]:
        if self._at_call:
            answer = text.lstrip()
            self._space += text[: len(text) - len(answer)]
            if not answer:
                return []
            text = self._space + answer if self._answered else answer
            self._at_call, self._space = False, ""
        self._answered = self._answered or bool(text)
        return [ContentText(text)] if text else []


class _MarkerParser(_Parser):
    """Formats whose calls start with a marker: answer text streams out until one may begin."""

    _MARKER: str

    def __init__(self, tool_names: frozenset[str], new_id: Callable[[], str] = new_call_id) -> None:
        super().__init__(tool_names, new_id)
        self._text = ""  # received and not yet given out
        self._scanned = 0  # how far `_text` is known not to hold the marker being looked for

    def _find(self, marker: str) -> int:
        """Where `marker` is in `_text`, or -1; searching only what came since the last look (no rescans of a long
        block for every token)."""
        at = self._text.find(marker, self._scanned)
        self._scanned = max(0, len(self._text) - len(marker) + 1) if at < 0 else 0
        return at

    def _take(self, end: int, skip: int = 0) -> str:
        """Remove and return `_text[:end]`, dropping `skip` more characters (a marker) after it."""
        taken, self._text, self._scanned = self._text[:end], self._text[end + skip :], 0
        return taken

    def _answer_until_marker(self) -> tuple[list[ToolEvent], bool]:
        """Give out the answer text before the marker; whether the marker has come (and was removed)."""
        start = self._find(self._MARKER)
        if start < 0:
            return self._content(self._take(_held_from(self._text, self._MARKER))), False
        before = self._take(start, len(self._MARKER))
        answer = before.rstrip()
        events = self._content(answer)
        self._at_call, self._space = True, self._space + before[len(answer) :]
        return events, True

    def _not_a_call(self, text: str) -> list[ToolEvent]:
        """Call text that did not parse (cut short by max_tokens, invalid JSON, an unknown function), given back as
        answer text so nothing the model wrote is lost."""
        return self._content(text)


class HermesParser(_MarkerParser):
    """`<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>` blocks, any number, after answer text or
    between pieces of it (Hermes, Qwen 2.5 and 3, and the many templates that copied them)."""

    _MARKER = "<tool_call>"
    _END = "</tool_call>"

    def __init__(self, tool_names: frozenset[str]) -> None:
        super().__init__(tool_names)
        self._in_block = False  # `_text` is the inside of an open block

    def feed(self, text: str) -> list[ToolEvent]:
        self._text += text
        events: list[ToolEvent] = []
        while True:
            if not self._in_block:
                answer, self._in_block = self._answer_until_marker()
                events += answer
                if not self._in_block:
                    return events
            end = self._find(self._END)
            if end < 0:
                return events
            self._in_block = False
            events += self._block(self._take(end, len(self._END)), closed=True)

    def finish(self) -> list[ToolEvent]:
        if self._in_block:
            # A block cut short (max_tokens, or a stop string at its end): its JSON may still be whole, so try it,
            # as vLLM does.
            self._in_block = False
            return self._block(self._take(len(self._text)), closed=False)
        return self._content(self._take(len(self._text)))

    def _block(self, inside: str, closed: bool) -> list[ToolEvent]:
        try:
            call = _call(json.loads(inside), self._tool_names)
        except ValueError:
            call = None
        if call is None:
            return self._not_a_call(self._MARKER + inside + (self._END if closed else ""))
        return self._calls([call])


class Llama3JsonParser(_Parser):
    """Llama 3.1-3.3: the whole answer is `{"name": "f", "parameters": {...}}` (or "arguments"), maybe after
    `<|python_tag|>`, several calls separated by `;`. A call can only be told from an answer that happens to be
    JSON once it is complete, so an answer starting like a call is held to the end."""

    _TAG = "<|python_tag|>"

    def __init__(self, tool_names: frozenset[str]) -> None:
        super().__init__(tool_names)
        self._text = ""
        self._decided = False  # the answer's start has shown whether it may be calls
        self._calls_maybe = False

    def feed(self, text: str) -> list[ToolEvent]:
        if self._decided and not self._calls_maybe:
            return self._content(text)
        self._text += text
        if self._decided:
            return []
        start = self._text.lstrip()
        if not start or (self._TAG.startswith(start) and start != self._TAG):
            return []  # only whitespace, or maybe the tag: not yet known
        self._decided = True
        self._calls_maybe = start.startswith(("{", self._TAG))
        if self._calls_maybe:
            return []
        text, self._text = self._text, ""
        return self._content(text)

    def finish(self) -> list[ToolEvent]:
        text, self._text = self._text, ""
        calls = self._parse(text) if self._calls_maybe else None
        return self._calls(calls) if calls else self._content(text)

    def _parse(self, text: str) -> list[Call] | None:
        calls: list[Call] = []
        rest = text.strip()
        while rest:
            rest = rest.removeprefix(self._TAG)
            parsed = _json_prefix(rest)
            call = _call(parsed[0], self._tool_names) if parsed else None
            if parsed is None or call is None:
                return None
            calls.append(call)
            rest = parsed[1].lstrip().removeprefix(";").lstrip()
        return calls


_MISTRAL_ID_CHARACTERS = string.ascii_letters + string.digits


def mistral_call_id() -> str:
    # Mistral's templates (and mistral-common) refuse a replayed call whose id is not 9 letters or digits, so an
    # id of the usual `call_...` form would break the agent's next turn.
    return "".join(secrets.choice(_MISTRAL_ID_CHARACTERS) for _ in range(9))


class MistralParser(_MarkerParser):
    """`[TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]` (tokenizers before v11) or `[TOOL_CALLS]f[ARGS]{...}`
    (v11 and later), the marker repeated before each call in the newer form. Calls run to the end of the answer,
    so a call is complete when the next marker comes or the text ends."""

    _MARKER = "[TOOL_CALLS]"
    _ARGS = "[ARGS]"

    def __init__(self, tool_names: frozenset[str]) -> None:
        super().__init__(tool_names, mistral_call_id)
        self._in_calls = False  # past the first marker: `_text` is the current call's text

    def feed(self, text: str) -> list[ToolEvent]:
        self._text += text
        events: list[ToolEvent] = []
        if not self._in_calls:
            events, self._in_calls = self._answer_until_marker()
        while self._in_calls and (end := self._find(self._MARKER)) >= 0:
            events += self._segment(self._take(end, len(self._MARKER)))
        return events

    def finish(self) -> list[ToolEvent]:
        text = self._take(len(self._text))
        return self._segment(text) if self._in_calls else self._content(text)

    def _segment(self, text: str) -> list[ToolEvent]:
        """The text after one marker: calls, then maybe answer text after them."""
        parsed = self._parse(text)
        if parsed is None:
            return self._not_a_call(self._MARKER + text)
        calls, rest = parsed
        return self._calls(calls) + self._content(rest)

    def _parse(self, text: str) -> tuple[list[Call], str] | None:
        body = text.lstrip()
        if body.startswith(("[", "{")):  # the older form: a list of call objects (or one)
            parsed = _json_prefix(body)
            if parsed is None:
                return None
            items = parsed[0] if isinstance(parsed[0], list) else [parsed[0]]
            calls = [_call(item, self._tool_names) for item in items]
            valid = [call for call in calls if call is not None]
            return (valid, parsed[1]) if items and len(valid) == len(items) else None
        # The newer form: name[ARGS]{...}; some models (or a text that lost the [ARGS] control token) write name{...}
        name, found, arguments = body.partition(self._ARGS)
        if not found:
            brace = body.find("{")
            name, arguments = (body[:brace], body[brace:]) if brace >= 0 else (body, "")
        parsed = _json_prefix(arguments)
        if name.strip() not in self._tool_names or parsed is None or not isinstance(parsed[0], dict):
            return None
        return [(name.strip(), json.dumps(parsed[0], ensure_ascii=False))], parsed[1]


_PARSERS: dict[str, Callable[[frozenset[str]], ToolOutputParser]] = {
    "hermes": HermesParser,
    "llama3_json": Llama3JsonParser,
    "mistral": MistralParser,
}


def native_parser(format_name: str, tool_names: frozenset[str]) -> ToolOutputParser:
    """A parser for one generation written in `format_name` (a `ChatTemplate.tool_format`), taking calls only of
    the functions in `tool_names`."""
    try:
        return _PARSERS[format_name](tool_names)
    except KeyError:
        raise ValueError(f"unknown tool-call format {format_name!r}; known: {', '.join(_PARSERS)}") from None
