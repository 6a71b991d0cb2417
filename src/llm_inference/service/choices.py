"""Several choices in one request (OpenAI's `n`, and several prompts in one completions request): each choice is
an ordinary generation with its own admission slot, all started at once so the engine batches them; choices of
one prompt share its KV cells in the engine (llama.cpp's decode loop copies them, vLLM's prefix cache)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from llm_inference.errors import InvalidParameter
from llm_inference.service.generation import GenerationStream, StreamItem
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
    """Several generation streams read as one: (choice index, item) pairs in the order the items arrive, each
    stream's own order kept. Closing it closes every stream (their generations end, their slots free)."""

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

    async def _pairs(self) -> AsyncIterator[tuple[int, StreamItem]]:
        self._readers = [asyncio.create_task(self._read(i, s)) for i, s in enumerate(self.streams)]
        open_streams = len(self.streams)
        while open_streams:
            index, item = await self._queue.get()
            if item is None:
                open_streams -= 1
            else:
                yield index, item
        for reader in self._readers:
            await reader  # a reader that failed raises here, as a single stream's failure would

    def __aiter__(self) -> AsyncIterator[tuple[int, StreamItem]]:
        return self._pairs()

    async def aclose(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for stream in self.streams:
            await stream.aclose()
