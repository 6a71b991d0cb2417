"""Several choices read as one stream (service/choices.py): what had arrived is read as one batch, a choice's
consecutive deltas joined into one, each choice's order kept; nothing counted twice or lost."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from llm_inference.engines.base import TokenLogprob
from llm_inference.service import Delta, Finished, ToolCallDelta
from llm_inference.service.choices import ChoiceStreams
from llm_inference.service.generation import GenerationStream, StreamItem, Timings, Usage


def _stream(items: list[StreamItem]) -> GenerationStream:
    async def produce() -> AsyncGenerator[StreamItem, None]:
        for item in items:  # no await between items: all of them arrive before the reader is read
            yield item

    async def release() -> None:
        pass

    prepared: Any = None  # ChoiceStreams never reads it
    return GenerationStream(prepared, produce(), release)


def _finished(tokens: int) -> Finished:
    return Finished("length", Usage(3, tokens), Timings(0.0, 0.0, 0.0))


async def test_a_choices_waiting_deltas_go_out_as_one_with_every_tokens_log_probability() -> None:
    first, second = TokenLogprob(1, b"a", -0.1), TokenLogprob(2, b"b", -0.2)
    call = ToolCallDelta(0, "", "call_1", "f")
    streams = ChoiceStreams(
        [
            _stream([Delta("a", (first,)), Delta("b", (second,)), _finished(2)]),
            _stream([Delta("x"), call, Delta("y"), Delta("z"), _finished(3)]),
        ]
    )
    batches = [batch async for batch in streams]
    await streams.aclose()
    assert batches == [
        [
            (0, Delta("ab", (first, second))),
            (0, _finished(2)),
            (1, Delta("x")),
            (1, call),  # a delta after a tool call's piece is not joined with the one before it
            (1, Delta("yz")),
            (1, _finished(3)),
        ]
    ]
