"""What a tool-call parser reads out of a model's text: answer text, and tool calls opened and their arguments
written, in the order the model wrote them. A stream passes these on as they come; a whole answer is their sum
(`collect`), so a streamed answer and an unstreamed one cannot disagree."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from llm_inference.engines.base import ToolCall


@dataclass(frozen=True, slots=True)
class ContentText:
    """Answer text (not part of any call)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallOpened:
    """The model started call number `index` (0, 1, ... in order) of function `name`."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolArguments:
    """More of call `index`'s arguments, as JSON text: the pieces of one call join into its arguments."""

    index: int
    text: str


ToolEvent = ContentText | ToolCallOpened | ToolArguments


class ToolOutputParser(Protocol):
    """Reads one generation's text as it arrives. `feed` may hold text back while it cannot yet tell whether it
    starts a call; `finish` gives out whatever is held once the text is complete."""

    def feed(self, text: str) -> list[ToolEvent]: ...

    def finish(self) -> list[ToolEvent]: ...


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def collect(events: Iterable[ToolEvent]) -> tuple[str, tuple[ToolCall, ...]]:
    """The answer text and the calls that `events` add up to."""
    text: list[str] = []
    opened: list[ToolCallOpened] = []
    arguments: list[list[str]] = []
    for event in events:
        if isinstance(event, ContentText):
            text.append(event.text)
        elif isinstance(event, ToolCallOpened):
            opened.append(event)
            arguments.append([])
        else:
            arguments[event.index].append(event.text)
    calls = tuple(ToolCall(o.id, o.name, "".join(parts)) for o, parts in zip(opened, arguments, strict=True))
    return "".join(text), calls


def parse_whole(parser: ToolOutputParser, text: str) -> tuple[str, tuple[ToolCall, ...]]:
    return collect([*parser.feed(text), *parser.finish()])
