"""Context pruning: fit a conversation into the context by dropping its oldest turns (`truncate: "oldest"`).

A turn is a user message with the replies that follow it, up to the next user message. Whole turns go, never
a user message without its answer: an answer left behind with no question, opening the conversation, reads
as nonsense to the model and breaks the templates that insist on user/assistant alternation. The system
messages and the last turn (from the last user message on) are always kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_inference.engines.base import ChatMessage, Engine


@dataclass(frozen=True, slots=True)
class Rendered:
    messages: list[ChatMessage]
    prompt: str
    tokens: list[int]
    dropped_messages: int = 0


def droppable_turns(messages: Sequence[ChatMessage]) -> list[list[int]]:
    """The indices of each turn's messages, oldest first, without the last turn (which is kept)."""
    turns: list[list[int]] = []
    for index, message in enumerate(messages):
        if message.role == "system":
            continue
        if message.role == "user" or not turns:
            turns.append([index])
        else:
            turns[-1].append(index)
    return turns[:-1]


def without_turns(messages: Sequence[ChatMessage], turns: Sequence[list[int]]) -> list[ChatMessage]:
    dropped = {index for turn in turns for index in turn}
    return [message for index, message in enumerate(messages) if index not in dropped]


# How a conversation is shown to the chat template: the messages it renders and the tool definitions beside
# them (service/tools writes calls and tools differently for templates without a tool format of their own).
Presenter = Callable[[Sequence[ChatMessage]], tuple[list[ChatMessage], Sequence[Mapping[str, Any]] | None]]


def as_is(messages: Sequence[ChatMessage]) -> tuple[list[ChatMessage], None]:
    return list(messages), None


async def render(
    engine: Engine, messages: list[ChatMessage], dropped_messages: int = 0, present: Presenter = as_is
) -> Rendered:
    prompt = await engine.render_chat(*present(messages))
    return Rendered(messages, prompt, await engine.tokenize(prompt), dropped_messages)


async def fit_oldest_first(
    engine: Engine, messages: list[ChatMessage], room: int, present: Presenter = as_is
) -> Rendered:
    """The conversation with the fewest oldest turns dropped whose prompt is at most `room` tokens; with every
    droppable turn dropped if none is that short (the caller then judges whether it fits at all).

    A binary search over how many turns to drop: dropping more never lengthens the prompt, and each try costs
    a render and a tokenization, so a long history costs a few tries rather than one per turn.
    """
    whole = await render(engine, messages, present=present)
    turns = droppable_turns(messages)
    if len(whole.tokens) <= room or not turns:
        return whole
    tried: dict[int, Rendered] = {}

    async def dropping(count: int) -> Rendered:
        if count not in tried:
            kept = without_turns(messages, turns[:count])
            tried[count] = await render(engine, kept, len(messages) - len(kept), present)
        return tried[count]

    low, high = 1, len(turns)  # the answer lies in [low, high]; `high` is the fallback when nothing fits
    while low < high:
        middle = (low + high) // 2
        if len((await dropping(middle)).tokens) <= room:
            high = middle
        else:
            low = middle + 1
    return await dropping(high)
