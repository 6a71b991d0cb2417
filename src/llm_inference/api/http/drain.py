"""Graceful drain on SIGTERM, inside Granian's worker process: refuse new work at once, finish work in flight.

Why the service handles SIGTERM itself: on SIGTERM Granian's main process forwards SIGTERM to the worker,
whose own handler stops accepting connections at once and waits for requests in flight; the app's lifespan
shutdown runs only after that. A pod would then refuse connections instead of answering 503, and its
readiness probe could not turn 503. So the worker's SIGTERM handler is replaced: readiness and new inference
requests answer 503 while requests in flight (streams included) run on, for at most
LLM_SHUTDOWN_GRACE_SECONDS; requests still running then are cancelled. Then Granian's own stop is triggered
through SIGINT, which Granian's worker handles exactly as it handles SIGTERM (granian._signals).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, LifeSpanScope, Message, Receive, Scope, Send

from llm_inference.service import InferenceService

log = logging.getLogger(__name__)

# Asks HTTP/1.1 keep-alive clients (ingress proxies, Prometheus) to reconnect, to a pod that is not leaving.
_CONNECTION_CLOSE = (b"connection", b"close")


class GracefulDrain:
    """An ASGI wrapper that counts HTTP requests in flight and drains them when the worker gets SIGTERM."""

    def __init__(self, app: ASGIApp, service: InferenceService, grace_seconds: float) -> None:
        self.app = app
        self.service = service
        self.grace_seconds = grace_seconds
        self.requests: set[asyncio.Timeout] = set()  # one cancel scope per request in flight
        self.idle = asyncio.Event()
        self.idle.set()
        self.drain_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope | LifeSpanScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Granian has set its worker's signal handlers by now; the startup message is the first
            # moment this code runs on the worker's event loop.
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.begin_drain)
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)  # type: ignore[arg-type]  # Litestar's ASGIApp omits lifespan
            return
        request = asyncio.timeout(None)
        self.requests.add(request)
        self.idle.clear()
        try:
            async with request:
                http_scope = cast("HTTPScope", scope)  # the lifespan scope returned above
                # HTTP/2 has no Connection header (RFC 9113 8.2.2): there the server's GOAWAY ends the connection.
                closing = self.service.draining and http_scope.get("http_version", "1.1") in {"1.0", "1.1"}
                await self.app(http_scope, receive, self._closing(send) if closing else send)
        except TimeoutError:
            if not request.expired():
                raise
            # cancelled because the grace period ran out: the client sees the response end early
        finally:
            self.requests.discard(request)
            if not self.requests:
                self.idle.set()

    @staticmethod
    def _closing(send: Send) -> Send:
        async def send_with_connection_close(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: Any = message.get("headers", [])
                message = {**message, "headers": [*headers, _CONNECTION_CLOSE]}
            await send(message)

        return send_with_connection_close

    def begin_drain(self) -> None:
        if self.service.draining:
            return
        self.service.draining = True
        log.info(
            "draining: new requests get 503, requests in flight may finish",
            extra={"in_flight": len(self.requests), "grace_seconds": self.grace_seconds},
        )
        self.drain_task = asyncio.get_running_loop().create_task(self._drain_then_stop())

    async def _drain_then_stop(self) -> None:
        try:
            if not self.idle.is_set():
                await asyncio.wait_for(self.idle.wait(), self.grace_seconds)
            log.info("drained: no request in flight")
        except TimeoutError:
            log.warning(
                "LLM_SHUTDOWN_GRACE_SECONDS elapsed: cancelling the requests still in flight",
                extra={"in_flight": len(self.requests), "grace_seconds": self.grace_seconds},
            )
            now = asyncio.get_running_loop().time()
            for request in list(self.requests):
                request.reschedule(now)
            await self.idle.wait()
        signal.raise_signal(signal.SIGINT)
