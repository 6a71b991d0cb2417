"""Server-Sent Events transport of a generation stream: each item encoded into frames by the surface that
owns the response (`data: <json>` per event on /api, OpenAI's chunks on /v1), then `data: [DONE]` (none after
the Responses API's events, which end with their own last event).

One task reads the events and writes each frame as it comes, so a token costs one pass through the event loop
(no producer task, queue or per-frame timer between the engine and the socket: at hundreds of streams those
hops were a sixth of the loop's time). Beside it, the response's own task waits for the client's disconnect
and sends a `: ping` comment after LLM_SSE_PING_SECONDS without a frame: Granian reports some gone clients only
when a write to them fails, so a stream that is silent (a stalled or slow engine) needs a write to notice.
Whatever ends the response (the last event, a disconnect, a failed write), the event stream is closed, which
aborts the engine request and frees its admission slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import msgspec
from litestar.response import Stream
from litestar.types import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DONE_FRAME = b"data: [DONE]\n\n"
PING_FRAME = b": ping\n\n"
_encoder = msgspec.json.Encoder()


class ClosableEvents(Protocol):
    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def aclose(self) -> None: ...


def data_frame(payload: object) -> bytes:
    """One SSE event carrying `payload` as JSON."""
    return b"data: " + _encoder.encode(payload) + b"\n\n"


# Turns one item of the stream into the bytes of one or more frames.
Encode = Callable[[Any], bytes]
# What is written when the stream raises: fixed bytes, or made then (an event that carries the stream's state).
ErrorFrame = bytes | Callable[[], bytes]


def _body(data: bytes, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


class _Writer:
    """Writes frames to one response. The event frames come from one task and a ping from another: `busy` (a
    write in progress) keeps the ping out, and an event frame waits for a ping being written. No lock: its
    `async with` cost a fifth of a microsecond per streamed frame, for a ping every LLM_SSE_PING_SECONDS."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._clock = asyncio.get_running_loop().time
        self.last_write = self._clock()
        self.busy = False
        self._ping: asyncio.Future[None] | None = None  # done when the ping being written is

    async def write(self, data: bytes, more: bool = True) -> None:
        while self._ping is not None:
            await asyncio.shield(self._ping)  # shielded: a cancelled writer must not cancel the ping's future
        self.busy = True
        try:
            await self._send({"type": "http.response.body", "body": data, "more_body": more})
        finally:
            self.busy = False
        self.last_write = self._clock()

    async def ping(self) -> None:
        """A ping comment, unless a frame is being written (that write is news enough)."""
        if self.busy or self._ping is not None:
            return
        self._ping = asyncio.get_running_loop().create_future()
        self.busy = True
        try:
            await self._send(_body(PING_FRAME))
            self.last_write = self._clock()
        finally:
            self.busy = False
            self._ping.set_result(None)
            self._ping = None


async def _write_events(
    events: ClosableEvents, encode: Encode, error_frame: ErrorFrame, done_frame: bytes, writer: _Writer
) -> None:
    iterator = aiter(events)
    while True:
        try:
            event = await anext(iterator)
        except StopAsyncIteration:
            break
        except Exception:
            log.exception("stream failed")
            await writer.write(error_frame if isinstance(error_frame, bytes) else error_frame())
            break
        await writer.write(encode(event))
    if done_frame:
        await writer.write(done_frame)
    await writer.write(b"", more=False)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _SSEResponse:
    """Litestar's streaming response with its body written as described at the top of this module."""

    def __init__(self, response: Any, stream: SSEStream) -> None:
        self._response, self._stream = response, stream
        self._events, self._ping_seconds = stream.events, stream.ping_seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._response.start_response(send)
            await self._send_body(send, receive)
            await self._response.after_response()
        finally:
            await self._events.aclose()

    async def _send_body(self, send: Send, receive: Receive) -> None:
        writer = _Writer(send)
        loop = asyncio.get_running_loop()
        stream = self._stream
        writing = asyncio.create_task(
            _write_events(self._events, stream.encode, stream.error_frame, stream.done_frame, writer), name="sse-writer"
        )
        disconnect = asyncio.create_task(_until_disconnect(receive), name="sse-disconnect")
        try:
            while True:
                due = writer.last_write + self._ping_seconds - loop.time()
                if due <= 0 and not writer.busy:
                    await writer.ping()
                    continue
                # Overdue while a frame is being written (a slow reader): that write is news enough.
                await asyncio.wait(
                    (writing, disconnect),
                    timeout=due if due > 0 else self._ping_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if writing.done() or disconnect.done():
                    return  # on a disconnect, `finally` stops the writer and the caller closes the events
        except Exception as exc:  # a ping to a peer that is gone
            log.debug("stream client gone: %r", exc)
        finally:
            for task in (writing, disconnect):
                task.cancel()
            await asyncio.wait((writing, disconnect))
            if not writing.cancelled() and writing.exception() is not None:
                log.debug("stream client gone: %r", writing.exception())


class SSEStream(Stream):
    def __init__(
        self,
        events: ClosableEvents,
        encode: Encode,
        error_frame: ErrorFrame,
        ping_seconds: float,
        done_frame: bytes = DONE_FRAME,
    ) -> None:
        super().__init__(
            iter(()),  # the body comes from `events`, written by _SSEResponse
            media_type="text/event-stream",
            # Proxies (nginx ingress) must not buffer a token stream.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.events, self.encode, self.error_frame, self.ping_seconds = events, encode, error_frame, ping_seconds
        self.done_frame = done_frame

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        # Litestar passes the route's media type, which would win over ours: a JSON route may answer a stream.
        kwargs["media_type"] = self.media_type
        return _SSEResponse(super().to_asgi_response(*args, **kwargs), self)


def sse_response(
    events: ClosableEvents, encode: Encode, error_frame: ErrorFrame, ping_seconds: float, done_frame: bytes = DONE_FRAME
) -> Stream:
    """A streaming response writing `events` as SSE frames; `error_frame` is written if the stream fails, then
    `done_frame` (b"": nothing) ends the stream."""
    return SSEStream(events, encode, error_frame, ping_seconds, done_frame)
