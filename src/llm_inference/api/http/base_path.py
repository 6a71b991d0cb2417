"""Serving under a path prefix: LLM_BASE_PATH, an ASGI server's root_path, or a mount inside a host application.

The app inside sees paths relative to its root ("/health/ready"), so its routes, auth-exempt paths and metric
labels do not depend on where it is served; the root itself travels in the scope (ROOT_KEY) for the few places
that write URLs a browser follows: the playground's page, Swagger UI's assets and the OpenAPI `servers`.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from llm_inference.api.http.errors import send_error

ROOT_KEY = "llm_inference.root"


def app_root(scope: Scope) -> str:
    """Where the app is served, without a trailing slash: "" at the root of the host, else e.g. "/llm"."""
    return str(scope.get(ROOT_KEY, ""))


def under_prefix(app: ASGIApp, base_path: str | None) -> ASGIApp:
    """The app answering under root_path (from the server or a host app), then under `base_path` within it.

    A request outside `base_path` gets 404 naming the prefix. Litestar's router would split the path at the
    first occurrence of root_path anywhere in it, so the app gets the relative path and root_path "" instead.
    """
    prefix = base_path or ""

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            await app(scope, receive, send)
            return
        root = scope.get("root_path", "").rstrip("/")
        path = scope["path"]
        # The ASGI spec's path includes root_path; servers of the older reading hand over the rest alone.
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root) :]
        if prefix:
            if path != prefix and not path.startswith(prefix + "/"):
                await _outside(scope, send, root + prefix)
                return
            path = path[len(prefix) :]
        inner = {**scope, "path": path or "/", "root_path": "", ROOT_KEY: root + prefix}
        await app(inner, receive, send)  # type: ignore[arg-type]

    return served


async def _outside(scope: Scope, send: Send, root: str) -> None:
    if scope["type"] == ScopeType.WEBSOCKET:
        await send({"type": "websocket.close", "code": 4404, "reason": ""})
        return
    message = f"there is no endpoint at {scope['path']}; this service answers under {root}/"
    await send_error(send, 404, "not_found", message, {})
