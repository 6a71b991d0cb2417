"""Run a prepared request: to its end (`complete`) or as a stream of deltas (`open_stream`).

Both hold an admission slot for the request's whole life, bound it by LLM_REQUEST_TIMEOUT_SECONDS and close
the engine's iterator whatever ends them, which aborts the request in the engine. The results are plain
values; each HTTP surface encodes them in its own wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_inference.engines.base import Chunk, FinishReason, TokenLogprob, ToolCall
from llm_inference.errors import RequestTimeout, ServiceError
from llm_inference.service.admission import Slot
from llm_inference.service.prepare import Prepared
from llm_inference.service.tools.events import (
    ContentText,
    ToolArguments,
    ToolCallOpened,
    ToolEvent,
    ToolOutputParser,
    parse_whole,
)

if TYPE_CHECKING:
    from llm_inference.service.core import InferenceService


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Timings:
    time_to_first_token_seconds: float
    total_seconds: float
    output_tokens_per_second: float


@dataclass(frozen=True, slots=True)
class ToolResult:
    tool_call_id: str
    content: str


@dataclass(frozen=True, slots=True)
class ToolRound:
    """Calls to server-executed tools the service ran before the answer (service/tool_rounds.py), and their
    results, in the calls' order."""

    calls: tuple[ToolCall, ...]
    results: tuple[ToolResult, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A whole generation: its answer text and, when the request offered tools, the calls the model made."""

    text: str
    finish_reason: str  # "stop" | "length" | "tool_calls"
    usage: Usage
    timings: Timings
    tool_calls: tuple[ToolCall, ...] = ()
    tool_rounds: tuple[ToolRound, ...] = ()  # the server-side tool rounds that led to this answer
    # When the request asked (SamplingParams.logprobs / prompt_logprobs): the answer's tokens, the prompt's.
    logprobs: tuple[TokenLogprob, ...] = ()
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(slots=True)  # not frozen, as engines.base.Chunk: one per streamed token
class Delta:
    """New text of a streamed generation, and its tokens' log probabilities when the request asked."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A streamed piece of call `index`: its first piece names the call (`id`, `name`), the others add to its
    arguments' JSON text."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The last item of a stream that ended normally."""

    finish_reason: str  # "stop" | "length" | "tool_calls"
    usage: Usage
    timings: Timings
    tool_rounds: tuple[ToolRound, ...] = ()  # as Outcome's


@dataclass(frozen=True, slots=True)
class Failed:
    """The last item of a stream that failed after it started (a timeout, an engine error)."""

    type: str
    message: str
    param: str | None = None


StreamItem = Delta | ToolCallDelta | Finished | Failed


class _Clock:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_token: float | None = None

    def mark(self, chunk: Chunk) -> None:
        if self.first_token is None and chunk.completion_tokens > 0:
            self.first_token = time.perf_counter()

    def timings(self, completion_tokens: int) -> Timings:
        now = time.perf_counter()
        first = self.first_token or now
        decode = now - first
        rate = (completion_tokens - 1) / decode if completion_tokens > 1 and decode > 0 else 0.0
        return Timings(
            time_to_first_token_seconds=round(first - self.started, 6),
            total_seconds=round(now - self.started, 6),
            output_tokens_per_second=round(rate, 3),
        )


def _usage(chunk: Chunk) -> Usage:
    return Usage(chunk.prompt_tokens, chunk.completion_tokens)


def public_finish_reason(reason: FinishReason, called_tools: bool = False) -> str:
    if reason is FinishReason.LENGTH:
        return "length"
    return "tool_calls" if called_tools else "stop"


def _stream_item(event: ToolEvent) -> Delta | ToolCallDelta:
    if isinstance(event, ContentText):
        return Delta(event.text)
    if isinstance(event, ToolCallOpened):
        return ToolCallDelta(event.index, "", event.id, event.name)
    return ToolCallDelta(event.index, event.text)


def tool_event(item: Delta | ToolCallDelta) -> ToolEvent:
    """The parser's event a stream item came from (the inverse of _stream_item)."""
    if isinstance(item, Delta):
        return ContentText(item.text)
    if item.id is not None and item.name is not None:
        return ToolCallOpened(item.index, item.id, item.name)
    return ToolArguments(item.index, item.arguments)


async def complete(service: InferenceService, prepared: Prepared, slot: Slot | None = None) -> Outcome:
    """Run a request to its end and join the text. Raises RequestTimeout past LLM_REQUEST_TIMEOUT_SECONDS.

    `slot`: an admission slot the caller already took (a batch admits all its prompts first); released here.
    """
    clock = _Clock()
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None
    last: Chunk | None = None
    try:
        with slot or service.admission.admit():
            try:
                async with asyncio.timeout(service.settings.request_timeout_seconds):
                    async with contextlib.aclosing(service.generation(prepared)) as chunks:
                        async for last in chunks:
                            clock.mark(last)
                            parts.append(last.text)
                            if last.logprobs:
                                logprobs.extend(last.logprobs)
                            if last.prompt_logprobs is not None:
                                prompt_logprobs = last.prompt_logprobs
            except TimeoutError:
                limit = service.settings.request_timeout_seconds
                raise RequestTimeout(f"generation took longer than LLM_REQUEST_TIMEOUT_SECONDS={limit}") from None
    finally:
        prepared.release_model()
    assert last is not None and last.finish_reason is not None
    text, calls = "".join(parts), tuple[ToolCall, ...]()
    if (parser := prepared.tool_parser()) is not None:
        text, calls = parse_whole(parser, text)
    return Outcome(
        text=text,
        finish_reason=public_finish_reason(last.finish_reason, bool(calls)),
        usage=_usage(last),
        timings=clock.timings(last.completion_tokens),
        tool_calls=calls,
        logprobs=tuple(logprobs),
        prompt_logprobs=prompt_logprobs,
    )


class GenerationStream:
    """One generation's items: Deltas, then one Finished or Failed. It owns the request's admission slot and
    engine iterator: closing it, whether or not its items were read, ends the generation in the engine and
    frees the slot (a client can leave before the response's body starts)."""

    def __init__(
        self,
        prepared: Prepared,
        items: AsyncGenerator[StreamItem, None],
        release: Callable[[], Awaitable[None]],
        prompt_logprobs: tuple[TokenLogprob, ...] | None = None,
    ) -> None:
        self.prepared = prepared
        self._items, self._release = items, release
        # The prompt's tokens with their log probabilities, when the request asked (an echo of the prompt).
        self.prompt_logprobs = prompt_logprobs

    def __aiter__(self) -> AsyncIterator[StreamItem]:
        return self._items

    async def aclose(self) -> None:
        try:
            await self._items.aclose()
        finally:
            await self._release()


class _Release:
    """Closes the engine's chunks and gives back the admission slot and the model's lease, once."""

    def __init__(self, chunks: AsyncGenerator[Chunk, None], slot: Slot, prepared: Prepared) -> None:
        self._chunks, self._slot, self._prepared, self._done = chunks, slot, prepared, False

    async def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._chunks.aclose()
        finally:
            self._slot.release()
            self._prepared.release_model()


async def open_stream(service: InferenceService, prepared: Prepared) -> GenerationStream:
    """Start a generation and return its stream.

    Admission and the engine's first step happen before this returns, so overload and engine errors still
    become HTTP statuses; after that, failures arrive as a Failed item.
    """
    try:
        slot = service.admission.admit()
    except BaseException:
        prepared.release_model()
        raise
    clock = _Clock()
    chunks = service.generation(prepared)
    release = _Release(chunks, slot, prepared)
    deadline = asyncio.get_running_loop().time() + service.settings.request_timeout_seconds
    try:
        async with asyncio.timeout_at(deadline):
            first = await anext(chunks)
    except BaseException as exc:
        await release()
        if isinstance(exc, TimeoutError):
            raise RequestTimeout("no first token within LLM_REQUEST_TIMEOUT_SECONDS") from None
        raise
    parser = prepared.tool_parser()
    items = _items(clock, first, chunks, release, deadline, parser)
    return GenerationStream(prepared, items, release, first.prompt_logprobs)


async def _items(
    clock: _Clock,
    first: Chunk,
    chunks: AsyncGenerator[Chunk, None],
    release: _Release,
    deadline: float,
    parser: ToolOutputParser | None,
) -> AsyncGenerator[StreamItem, None]:
    called_tools = False
    # With tools, a token's log probability goes with the next answer text the parser lets through (the
    # tokens that wrote a call's JSON carry none, as OpenAI's logprobs cover the message's content).
    pending: list[TokenLogprob] = []
    try:
        chunk = first
        async with asyncio.timeout_at(deadline):
            while True:
                clock.mark(chunk)
                if parser is None:
                    if chunk.text or chunk.logprobs:
                        yield Delta(chunk.text, chunk.logprobs)
                else:
                    pending.extend(chunk.logprobs)
                    events = parser.feed(chunk.text) if chunk.text else []
                    if chunk.finish_reason is not None:
                        events += parser.finish()
                    for event in events:
                        called_tools = called_tools or isinstance(event, ToolCallOpened)
                        if pending and isinstance(event, ContentText):
                            yield Delta(event.text, tuple(pending))
                            pending.clear()
                        else:
                            yield _stream_item(event)
                if chunk.finish_reason is not None:
                    # Free the slot and the model before the end is passed on: a client that sends its next
                    # request as soon as it reads this one's end must find them free.
                    finished = Finished(
                        public_finish_reason(chunk.finish_reason, called_tools),
                        _usage(chunk),
                        clock.timings(chunk.completion_tokens),
                    )
                    await release()
                    yield finished
                    return
                chunk = await anext(chunks)
    except TimeoutError:
        yield Failed(RequestTimeout.type, "generation exceeded LLM_REQUEST_TIMEOUT_SECONDS")
    except ServiceError as exc:
        yield Failed(exc.type, exc.message, exc.param)
    finally:
        await release()
