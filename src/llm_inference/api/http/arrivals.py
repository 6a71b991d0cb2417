"""Middleware, outermost in the app: every POST counts as on its way to an engine (engines/arrivals.py) until
its engine queues it or it ends. Only POSTs generate; other methods and WebSocket messages are not counted."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from llm_inference.engines.arrivals import ARRIVALS


def count_arrivals(app: ASGIApp) -> ASGIApp:
    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        with ARRIVALS.arriving():
            await app(scope, receive, send)

    return counting
