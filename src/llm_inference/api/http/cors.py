"""CORS, exactly: a listed origin (any origin with `*`) gets Access-Control-* headers, any other gets none.

Litestar's CORS middleware sends Access-Control-Allow-Methods/-Headers to every origin and answers a refused
preflight in plain text; this one says nothing to an origin it does not allow, and refuses its preflights with
the service's JSON error body.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from llm_inference.api.http.errors import send_error

ALLOWED_METHODS = "GET, POST"
ALLOWED_HEADERS = "authorization, content-type"
# Headers a browser script may read: without this, it could not see when to retry.
EXPOSED_HEADERS = "retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, ratelimit-policy"
PREFLIGHT_MAX_AGE_SECONDS = "600"


def _origin(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"origin":
            return value.decode("latin-1")
    return None


def _is_preflight(scope: HTTPScope) -> bool:
    asks = any(name == b"access-control-request-method" for name, _ in scope["headers"])
    return scope["method"] == "OPTIONS" and asks


def cors(app: ASGIApp, allowed_origins: tuple[str, ...]) -> ASGIApp:
    any_origin = "*" in allowed_origins
    origins = frozenset(allowed_origins)

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        origin = _origin(scope) if scope["type"] == ScopeType.HTTP else None
        if origin is None or scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        allowed = any_origin or origin in origins
        granted = {"Access-Control-Allow-Origin": "*" if any_origin else origin, "Vary": "Origin"}
        if _is_preflight(scope):
            if not allowed:
                await send_error(
                    send,
                    403,
                    "cors_origin_not_allowed",
                    "this origin is not in LLM_CORS_ALLOWED_ORIGINS",
                    {"Vary": "Origin"},
                    path=scope["path"],
                )
                return
            headers = {
                **granted,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE_SECONDS,
            }
            raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": 204, "headers": raw})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if not allowed:
            await app(scope, receive, send)
            return

        async def send_granted(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers.update({**granted, "Access-Control-Expose-Headers": EXPOSED_HEADERS})
            await send(message)

        await app(scope, receive, send_granted)

    return handle
