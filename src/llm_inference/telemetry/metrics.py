"""Prometheus metrics: one registry per app, an ASGI middleware for HTTP metrics, and the /metrics route."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, get
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "http_requests", "HTTP requests by route, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds", "HTTP request duration until the last body byte is sent.",
            ["route", "method"], buckets=HTTP_DURATION_BUCKETS, registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _route(scope: Scope) -> str:
    # The route template, not the raw path: a raw path would make one series per URL a client invents.
    handler = scope.get("route_handler")
    template = scope.get("path_template")
    if template:
        return str(template)
    if handler is not None and getattr(handler, "paths", None):
        return sorted(handler.paths)[0]
    return "unmatched"


def http_metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        metrics: Metrics = scope["litestar_app"].state.metrics
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            route, method = _route(scope), scope["method"]
            metrics.http_requests.labels(route, method, str(status)).inc()
            metrics.http_duration.labels(route, method).observe(time.perf_counter() - started)

    return middleware


@get("/metrics", tags=["observability"], summary="Prometheus metrics", include_in_schema=True)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
