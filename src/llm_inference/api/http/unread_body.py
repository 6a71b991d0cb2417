"""Keep-alive after an early answer: a request body the response did not wait for is drained, or ends the
connection.

Refusals (401, 404, 413, 415, 429, 503, ...) answer without reading the request body, and Granian leaves the
unread body to hyper. Over HTTP/1.1 hyper then closes the connection, but when it had already written the
response head it could not say so: a pooled client sent its next request on that connection and lost it
("Server disconnected without sending a response"). Over HTTP/2 hyper resets the refused request's stream
while the client is still uploading, and httpx reports that upload as failed instead of the 413.

So a response that starts before its request body was read says `Connection: close` over HTTP/1.x (hyper then
closes the connection once it is written; the client opens a new one), and after the response, on either
version, the rest of the body is read and dropped within a bound: the HTTP/2 client then gets its answer, and
the HTTP/1.x close is an orderly one (closing a socket with unread data resets the connection, which can
destroy the response before the client has read it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

# Enough for a body a few times LLM_MAX_REQUEST_BYTES's default; a client sending more than this after its
# refusal, or slower than this, loses the connection with unread data (a reset) instead.
DRAIN_LIMIT_BYTES = 4 * 1024 * 1024
DRAIN_LIMIT_SECONDS = 5.0

_HTTP1 = {"1.0", "1.1"}


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


def _announces_body(scope: Scope) -> bool:
    """HTTP/1.x frames a body with Content-Length or Transfer-Encoding; without either there is none."""
    if _header(scope, b"transfer-encoding") is not None:
        return True
    length = _header(scope, b"content-length")
    return length is not None and length.strip() != b"0"


class CloseAfterUnreadBody:
    """An ASGI wrapper, outermost: a response that starts before the request body was read closes an HTTP/1.x
    connection and says so; after it, the rest of the body is drained within a bound."""

    def __init__(
        self,
        app: ASGIApp,
        drain_limit_bytes: int = DRAIN_LIMIT_BYTES,
        drain_limit_seconds: float = DRAIN_LIMIT_SECONDS,
    ) -> None:
        self.app = app
        self.drain_limit_bytes = drain_limit_bytes
        self.drain_limit_seconds = drain_limit_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        http1 = scope.get("http_version") in _HTTP1
        if http1 and not _announces_body(scope):
            await self.app(scope, receive, send)
            return
        body_read = False

        async def tracking_receive() -> ReceiveMessage:
            nonlocal body_read
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True
            return message

        # A plain function handing back send's awaitable: no coroutine of its own for every streamed frame.
        def closing_send(message: Message) -> Awaitable[None]:
            # HTTP/2 has no Connection header (RFC 9113 8.2.2): there only the drain below is needed.
            if message["type"] == "http.response.start" and not body_read and http1:
                headers: Any = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            return send(message)

        await self.app(scope, tracking_receive, closing_send)
        # A client that asked for 100-continue and got a final answer instead does not send the body at all.
        if not body_read and (_header(scope, b"expect") or b"").lower() != b"100-continue":
            await self._drain(receive)

    async def _drain(self, receive: Receive) -> None:
        drained = 0
        try:
            async with asyncio.timeout(self.drain_limit_seconds):
                while drained <= self.drain_limit_bytes:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
                    drained += len(message.get("body", b""))
        except TimeoutError:
            pass
