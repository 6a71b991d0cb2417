"""API-key authentication: `Authorization: Bearer <key>` on every route but the exempt ones (probes...)."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from llm_inference.api.http.errors import refuse
from llm_inference.auth_keys import ApiKeys

# The scope["state"] key under which the caller's key id (never the key) is left for the rate limiter.
CALLER_KEY_ID = "api_key_id"
REALM = 'Bearer realm="llm-inference"'
BEARER_SUBPROTOCOL = "bearer"


def is_exempt(path: str, exempt_paths: tuple[str, ...]) -> bool:
    """An exact match, or a prefix that ends at a path segment: /swagger-ui covers /swagger-ui/assets/x.js.
    "/" is the root page alone, never a prefix of every path."""
    return any(path == p or (p.rstrip("/") != "" and path.startswith(p.rstrip("/") + "/")) for p in exempt_paths)


def is_guarded(scope: Scope, exempt_paths: tuple[str, ...]) -> bool:
    """Whether keys and rate limits apply: HTTP requests and WebSocket handshakes outside the exempt paths.
    CORS preflights carry no credentials by design (the CORS layer answers them), so they are never guarded."""
    if scope["type"] == ScopeType.HTTP:
        if scope["method"] == "OPTIONS":
            return False
    elif scope["type"] != ScopeType.WEBSOCKET:
        return False
    return not is_exempt(scope["path"], exempt_paths)


def _subprotocol_token(scope: Scope) -> str | None:
    # Browsers cannot set headers on a WebSocket, only subprotocols: `new WebSocket(url, ["bearer",
    # "bearer.<key>"])`. Not a query parameter, which proxies and access logs would record.
    protocols: list[str] = scope.get("subprotocols") or []  # type: ignore[assignment]  # websocket scopes only
    for protocol in protocols:
        if protocol.startswith(BEARER_SUBPROTOCOL + "."):
            return protocol[len(BEARER_SUBPROTOCOL) + 1 :] or None
    return None


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return _subprotocol_token(scope) if scope["type"] == ScopeType.WEBSOCKET else None


def api_key_middleware(keys: ApiKeys, exempt_paths: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def middleware(app: ASGIApp) -> ASGIApp:
        async def check(scope: Scope, receive: Receive, send: Send) -> None:
            if not is_guarded(scope, exempt_paths):
                await app(scope, receive, send)
                return
            token = bearer_token(scope)
            key_id = keys.identify(token) if token else None
            if key_id is None:
                # RFC 6750: say that a token was presented and refused, never what it was.
                challenge = REALM + (', error="invalid_token"' if token else "")
                message = "a valid API key is required: send Authorization: Bearer <key>"
                await refuse(scope, receive, send, 401, "unauthorized", message, {"WWW-Authenticate": challenge})
                return
            scope.setdefault("state", {})[CALLER_KEY_ID] = key_id
            await app(scope, receive, send)

        return check

    return middleware
