"""Server-Sent Events framing of a stream of events: `data: <json>` per event, then `data: [DONE]`.

Two guarantees beyond framing. A `: ping` comment goes out after LLM_SSE_PING_SECONDS without an event:
Granian reports some gone clients only when a write to them fails, so a stream that is silent (a stalled
or slow engine) needs a write to notice. And the event stream, whose `finally` frees the engine request and
its admission slot, is closed when the response ends for any reason, not when its generator is collected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import Stream
from litestar.types import Receive, Scope, Send

from llm_inference.api.schemas import ErrorDetail, ErrorEvent, StreamEvent

log = logging.getLogger(__name__)

DONE_FRAME = b"data: [DONE]\n\n"
PING_FRAME = b": ping\n\n"
# Frames produced ahead of a slow reader; beyond that the producer (and so the engine's output) waits.
READ_AHEAD_FRAMES = 16
_encoder = msgspec.json.Encoder()


def _frame(event: StreamEvent) -> bytes:
    return b"data: " + _encoder.encode(event) + b"\n\n"


async def _produce(events: AsyncIterator[StreamEvent], frames: asyncio.Queue[bytes]) -> None:
    """Move events into the queue. One task drives the event generator from start to end, as its
    timeouts require; cancelling this task closes the generator, which aborts the engine request."""
    try:
        async for event in events:
            await frames.put(_frame(event))
    except Exception:
        log.exception("stream failed")
        failed = ErrorEvent(ErrorDetail(type="internal_error", message="internal server error"))
        await frames.put(_frame(failed))
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    await frames.put(DONE_FRAME)


async def _frames(events: AsyncIterator[StreamEvent], ping_seconds: float) -> AsyncIterator[bytes]:
    frames: asyncio.Queue[bytes] = asyncio.Queue(maxsize=READ_AHEAD_FRAMES)
    producer = asyncio.create_task(_produce(events, frames), name="sse-producer")
    try:
        while True:
            try:
                frame = await asyncio.wait_for(frames.get(), ping_seconds)
            except TimeoutError:
                yield PING_FRAME
                continue
            yield frame
            if frame is DONE_FRAME:
                return
    finally:
        producer.cancel()


class _ClosingResponse:
    """Runs the streaming response, then closes its frames whatever happened: Litestar cancels the body on a
    disconnect and may leave the iterator suspended at a `yield`, which would hold the engine request."""

    def __init__(self, response: Any, frames: AsyncIterator[bytes]) -> None:
        self._response, self._frames = response, frames

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._response(scope, receive, send)
        finally:
            await self._frames.aclose()  # type: ignore[attr-defined]


class SSEStream(Stream):
    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return _ClosingResponse(super().to_asgi_response(*args, **kwargs), self.iterator)  # type: ignore[arg-type]


def sse_response(events: AsyncIterator[StreamEvent], ping_seconds: float) -> Stream:
    return SSEStream(
        _frames(events, ping_seconds),
        media_type="text/event-stream",
        # Proxies (nginx ingress) must not buffer a token stream.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
