"""One template for every inference endpoint: validate, resolve into an engine request, then run or stream.

Both /api/generate and /api/chat (and their stream variants) go through these steps, so limits, admission,
timeouts and cancellation behave the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from llm_inference.api.schemas import (
    DeltaEvent,
    DoneEvent,
    ErrorDetail,
    ErrorEvent,
    SamplingFields,
    StreamEvent,
    Timings,
    Usage,
)
from llm_inference.engines.base import ChatMessage, Chunk, Engine, FinishReason, GenerationRequest, SamplingParams
from llm_inference.errors import (
    ContextOverflow,
    InvalidParameter,
    NotReady,
    Overloaded,
    RequestTimeout,
    ServiceError,
)
from llm_inference.engines.watchdog import StallWatch
from llm_inference.models.registry import ModelRegistry
from llm_inference.settings import Settings
from llm_inference.telemetry.inference import InferenceObserver


class Admission:
    """Bounds requests in flight (running + queued) so overload answers 429 at once instead of piling up."""

    def __init__(self, running: int, queued: int) -> None:
        self.capacity = running + queued
        self.in_flight = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self.in_flight >= self.capacity:
            raise Overloaded(
                f"{self.in_flight} requests in flight, the limit is {self.capacity} "
                "(LLM_MAX_CONCURRENT_REQUESTS + LLM_MAX_QUEUED_REQUESTS); retry later"
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


@dataclass
class InferenceService:
    settings: Settings
    registry: ModelRegistry
    admission: Admission = field(init=False)
    stall_watch: StallWatch = field(init=False)

    draining: bool = False
    observer: InferenceObserver | None = None  # metrics, traces and the access log's inference fields

    def generation(self, prepared: Prepared) -> AsyncIterator[Chunk]:
        chunks = prepared.engine.generate(prepared.request)
        return chunks if self.observer is None else self.observer.watch(prepared, chunks)

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.max_concurrent_requests, self.settings.max_queued_requests)
        self.stall_watch = StallWatch(self.settings.engine_stall_seconds)

    async def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining: the service is shutting down"
        ready, reason = await self.registry.readiness()
        if ready:
            stalled = self.stall_watch.stalled(self.registry.engine_for(None)[1])
            if stalled:
                return False, stalled
        return ready, reason


@dataclass
class Prepared:
    """A validated request, ready for its engine."""

    model: str
    engine: Engine
    request: GenerationRequest
    operation: str  # "chat" | "text_completion" (GenAI operation names)
    messages: list[ChatMessage] | None = None  # a chat's messages before the template rendered them


@dataclass
class Outcome:
    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings


def resolve_sampling(settings: Settings, body: SamplingFields) -> SamplingParams:
    max_tokens = settings.default_max_tokens if body.max_tokens is None else body.max_tokens
    if max_tokens > settings.max_tokens_limit:
        raise InvalidParameter(
            f"max_tokens {max_tokens} exceeds LLM_MAX_TOKENS_LIMIT={settings.max_tokens_limit}",
            param="max_tokens",
        )
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > settings.max_stop_sequences:
        raise InvalidParameter(
            f"{len(stop)} stop sequences exceed LLM_MAX_STOP_SEQUENCES={settings.max_stop_sequences}",
            param="stop",
        )
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=settings.default_temperature if body.temperature is None else body.temperature,
        top_p=settings.default_top_p if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        seed=body.seed,
        stop=stop,
        ignore_eos=body.ignore_eos,
    )


def _reject_nul(text: str, param: str) -> None:
    if "\x00" in text:
        raise InvalidParameter(f"{param} must not contain NUL characters", param=param)


async def prepare(
    service: InferenceService,
    body: SamplingFields,
    *,
    prompt: str | None = None,
    messages: list[ChatMessage] | None = None,
) -> Prepared:
    if service.draining:
        raise NotReady("the service is shutting down; retry on another replica")
    sampling = resolve_sampling(service.settings, body)
    model, engine = service.registry.engine_for(body.model)
    if messages is not None:
        for index, message in enumerate(messages):
            _reject_nul(message.content, f"messages[{index}].content")
        prompt = await engine.render_chat(messages)
        operation = "chat"
    else:
        assert prompt is not None
        _reject_nul(prompt, "prompt")
        operation = "text_completion"
    tokens = await engine.tokenize(prompt)
    if not tokens:  # an engine cannot start a sequence from nothing
        raise InvalidParameter("the prompt has no tokens for this model", param="prompt")
    context_length = engine.info().context_length
    if len(tokens) >= context_length:
        raise ContextOverflow(len(tokens), context_length)
    request = GenerationRequest(
        request_id=uuid.uuid4().hex, prompt=prompt, sampling=sampling, prompt_token_ids=tuple(tokens)
    )
    return Prepared(model=model, engine=engine, request=request, operation=operation, messages=messages)


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
    return Usage(chunk.prompt_tokens, chunk.completion_tokens, chunk.prompt_tokens + chunk.completion_tokens)


def _public_finish(reason: FinishReason) -> str:
    return "length" if reason is FinishReason.LENGTH else "stop"


async def complete(service: InferenceService, prepared: Prepared) -> Outcome:
    """Run a request to its end and join the text. Raises RequestTimeout past LLM_REQUEST_TIMEOUT_SECONDS."""
    clock = _Clock()
    parts: list[str] = []
    last: Chunk | None = None
    with service.admission.slot():
        try:
            async with asyncio.timeout(service.settings.request_timeout_seconds):
                async with contextlib.aclosing(service.generation(prepared)) as chunks:
                    async for last in chunks:
                        clock.mark(last)
                        parts.append(last.text)
        except TimeoutError:
            raise RequestTimeout(
                f"generation took longer than LLM_REQUEST_TIMEOUT_SECONDS={service.settings.request_timeout_seconds}"
            ) from None
    assert last is not None and last.finish_reason is not None
    return Outcome(
        text="".join(parts),
        finish_reason=last.finish_reason,
        usage=_usage(last),
        timings=clock.timings(last.completion_tokens),
    )


class EventStream:
    """One generation's events. Closing it, whether or not its events were read, ends the generation in the
    engine and frees its admission slot (a client can leave before the response's body starts)."""

    def __init__(self, events: AsyncIterator[StreamEvent], release: _Release) -> None:
        self._events, self._release = events, release

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events

    async def aclose(self) -> None:
        try:
            await self._events.aclose()  # type: ignore[attr-defined]
        finally:
            await self._release()


class _Release:
    """Closes the engine's chunks and leaves the admission slot, once."""

    def __init__(self, chunks: AsyncIterator[Chunk], slot: contextlib.AbstractContextManager[None]) -> None:
        self._chunks, self._slot, self._done = chunks, slot, False

    async def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._chunks.aclose()  # type: ignore[attr-defined]
        finally:
            self._slot.__exit__(None, None, None)


async def open_stream(service: InferenceService, prepared: Prepared) -> EventStream:
    """Start a generation and return its event stream.

    Admission and the engine's first step happen before this returns, so overload and engine errors still
    become HTTP statuses; after that, failures arrive as an error event. Closing the stream (client gone)
    closes the engine iterator, which aborts the request in the engine.
    """
    slot = service.admission.slot()
    slot.__enter__()
    clock = _Clock()
    chunks = service.generation(prepared)
    release = _Release(chunks, slot)
    deadline = asyncio.get_running_loop().time() + service.settings.request_timeout_seconds
    try:
        async with asyncio.timeout_at(deadline):
            first = await anext(chunks)
    except BaseException as exc:
        await release()
        if isinstance(exc, TimeoutError):
            raise RequestTimeout("no first token within LLM_REQUEST_TIMEOUT_SECONDS") from None
        raise
    return EventStream(_events(prepared, clock, first, chunks, release, deadline), release)


async def _events(
    prepared: Prepared,
    clock: _Clock,
    first: Chunk,
    chunks: AsyncIterator[Chunk],
    release: _Release,
    deadline: float,
) -> AsyncIterator[StreamEvent]:
    try:
        chunk = first
        async with asyncio.timeout_at(deadline):
            while True:
                clock.mark(chunk)
                if chunk.text:
                    yield DeltaEvent(text=chunk.text)
                if chunk.finish_reason is not None:
                    yield DoneEvent(
                        model=prepared.model,
                        finish_reason=_public_finish(chunk.finish_reason),  # type: ignore[arg-type]
                        usage=_usage(chunk),
                        timings=clock.timings(chunk.completion_tokens),
                    )
                    return
                chunk = await anext(chunks)
    except TimeoutError:
        yield ErrorEvent(ErrorDetail(type=RequestTimeout.type, message="generation exceeded LLM_REQUEST_TIMEOUT_SECONDS"))
    except ServiceError as exc:
        yield ErrorEvent(ErrorDetail(type=exc.type, message=exc.message, param=exc.param))
    finally:
        await release()


def outcome_finish(outcome: Outcome) -> str:
    return _public_finish(outcome.finish_reason)
