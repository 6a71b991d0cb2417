"""Several choices in one request (OpenAI's `n`, and several prompts in one completions request): each choice is
an ordinary generation with its own admission slot, all started at once so the engine batches them; choices of
one prompt share its KV cells in the engine (llama.cpp's decode loop copies them, vLLM's prefix cache)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from llm_inference.engines.arrivals import expect_arrivals
from llm_inference.errors import InvalidParameter
from llm_inference.service.generation import Delta, GenerationStream, StreamItem
from llm_inference.service.prepare import SamplingInput
from llm_inference.settings import Settings

T = TypeVar("T")

_SEEDS = 2**32


def check_choice_count(settings: Settings, count: int, param: str) -> None:
    if count > settings.max_choices:
        raise InvalidParameter(f"{param}: {count} choices exceed LLM_MAX_CHOICES={settings.max_choices}", param=param)


def choice_sampling(asked: SamplingInput, index: int) -> SamplingInput:
    """Choice `index`'s sampling: with a seed, choice i draws with seed + i, so the choices differ from one
    another (the same seed would draw the same answer n times) and the request stays reproducible."""
    if asked.seed is None or index == 0:
        return asked
    return dataclasses.replace(asked, seed=(asked.seed + index) % _SEEDS)


async def run_all(runs: Sequence[Awaitable[T]]) -> list[T]:
    """Every run's result, in order. The first failure fails the request: the other runs are cancelled (their
    slots and models released) before it is raised."""
    expect_arrivals(len(runs))
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def open_all(openers: Sequence[Awaitable[GenerationStream]]) -> ChoiceStreams:
    """The choices' streams, opened at once; if one cannot open (overload, an engine error), the others are
    closed and its error raised, as a single stream's would be."""
    expect_arrivals(len(openers))
    tasks = [asyncio.ensure_future(opener) for opener in openers]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    streams = [result for result in results if isinstance(result, GenerationStream)]
    failure = next((result for result in results if isinstance(result, BaseException)), None)
    if failure is not None:
        for stream in streams:
            await stream.aclose()
        raise failure
    return ChoiceStreams(streams)


class ChoiceStreams:
    """Several generation streams read as one: batches of (choice index, item) pairs, in the order the items
    arrive, each stream's own order kept. A batch holds every item that had arrived when it was read, a choice's
    consecutive deltas joined into one (text and log probabilities together): a client that falls behind gets
    one event per choice for all it missed, not one per token. Closing it closes every stream (their
    generations end, their slots free)."""

    def __init__(self, streams: list[GenerationStream]) -> None:
        self.streams = streams
        self._queue: asyncio.Queue[tuple[int, StreamItem | None]] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []

    async def _read(self, index: int, stream: GenerationStream) -> None:
        try:
            async for item in stream:
                self._queue.put_nowait((index, item))
        finally:
            self._queue.put_nowait((index, None))  # this stream has ended

    async def _batches(self) -> AsyncIterator[list[tuple[int, StreamItem]]]:
        self._readers = [asyncio.create_task(self._read(i, s)) for i, s in enumerate(self.streams)]
        open_streams = len(self.streams)
        queue = self._queue
        while open_streams:
            arrived = [await queue.get()]
            while not queue.empty():
                arrived.append(queue.get_nowait())
            batch: list[tuple[int, StreamItem]] = []
            last: dict[int, int] = {}  # choice index -> where its latest item is in the batch
            for index, item in arrived:
                if item is None:
                    open_streams -= 1
                    continue
                at = last.get(index)
                if at is not None and isinstance(item, Delta) and isinstance(previous := batch[at][1], Delta):
                    batch[at] = (index, Delta(previous.text + item.text, previous.logprobs + item.logprobs))
                else:
                    last[index] = len(batch)
                    batch.append((index, item))
            if batch:
                yield batch
        for reader in self._readers:
            await reader  # a reader that failed raises here, as a single stream's failure would

    def __aiter__(self) -> AsyncIterator[list[tuple[int, StreamItem]]]:
        return self._batches()

    async def aclose(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for stream in self.streams:
            await stream.aclose()
