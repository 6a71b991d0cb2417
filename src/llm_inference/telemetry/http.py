"""Observes every HTTP request: its metrics, its server span (continuing an incoming W3C traceparent), its
request id (X-Request-ID, echoed or made) and one access log line with the route, status, duration and, for
inference, the model and token counts."""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from llm_inference.telemetry.metrics import Metrics

access_log = logging.getLogger("llm_inference.access")

# Probes and scrapes arrive every few seconds from machines: counted, but not traced and logged only at debug.
QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})
# A caller's X-Request-ID is kept when it is a plain token (a gateway's UUID or trace id); anything else (too
# long, spaces, control characters) would pollute logs, so the request gets a new id instead.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
REQUEST_ID_HEADER = b"x-request-id"


@dataclass(slots=True)
class Exchange:
    """What the inference path adds to its HTTP request's access log line."""

    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    def log_fields(self) -> dict[str, object]:
        return {name: value for name in self.__slots__ if (value := getattr(self, name)) is not None}


current_exchange: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("exchange", default=None)


def _route(scope: Scope) -> str:
    # The route template, not the raw path: a raw path would make one series per URL a client invents.
    return str(scope.get("path_template") or "unmatched")


def _server_span(tracer: Tracer, scope: HTTPScope) -> trace.Span:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    client = scope.get("client")
    attributes = {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if client:
        attributes["client.address"] = client[0]
    if "user-agent" in headers:
        attributes["user_agent.original"] = headers["user-agent"]
    return tracer.start_span(
        scope["method"], context=propagate.extract(headers), kind=SpanKind.SERVER, attributes=attributes
    )


def request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _SANE_REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


def _describe_response(span: trace.Span, method: str, route: str, status: int) -> None:
    if route != "unmatched":
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", str(status))


def observe_http(app: ASGIApp, metrics: Metrics, tracer: Tracer | None) -> ASGIApp:
    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        quiet = scope["path"] in QUIET_PATHS
        exchange = Exchange()
        exchange_token = current_exchange.set(exchange)
        request_id = request_id_of(scope)
        request_id_header = (REQUEST_ID_HEADER, request_id.encode())
        span = None if tracer is None or quiet else _server_span(tracer, scope)
        if span is not None:
            span.set_attribute("http.request.id", request_id)
        span_token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        status = 500  # if the app fails before it answers, the server answers 500

        # A plain function handing back send's awaitable: no coroutine of its own for every streamed frame.
        def send_with_status(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, request_id_header]}
            return send(message)

        try:
            await app(scope, receive, send_with_status)
        finally:
            duration = time.perf_counter() - started
            route, method = _route(scope), scope["method"]
            metrics.http_requests.labels(route, method, str(status)).inc()
            metrics.http_duration.labels(route, method).observe(duration)
            if span is not None:
                _describe_response(span, method, route, status)
            # Logged while the server span is still current, so the line carries its trace and span ids.
            access_log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "route": route,
                    "method": method,
                    "status": status,
                    "duration_seconds": round(duration, 6),
                    "client": (scope.get("client") or ("",))[0],
                    "request_id": request_id,
                    **exchange.log_fields(),
                },
            )
            if span is not None:
                span.end()
                otel_context.detach(span_token)  # type: ignore[arg-type]
            current_exchange.reset(exchange_token)

    return observed
