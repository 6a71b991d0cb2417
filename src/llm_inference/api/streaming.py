"""Server-Sent Events framing of a stream of events: `data: <json>` per event, then `data: [DONE]`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from litestar.response import Stream

from llm_inference.api.schemas import StreamEvent

DONE_FRAME = b"data: [DONE]\n\n"
_encoder = msgspec.json.Encoder()


async def _frames(events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield b"data: " + _encoder.encode(event) + b"\n\n"
        yield DONE_FRAME
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def sse_response(events: AsyncIterator[StreamEvent]) -> Stream:
    return Stream(
        _frames(events),
        media_type="text/event-stream",
        # Proxies (nginx ingress) must not buffer a token stream.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
