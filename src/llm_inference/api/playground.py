"""The chat playground at GET /: its page, its static files under /ui, and the CSP that both are served with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.enums import ScopeType
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from llm_inference.api.http.base_path import app_root

UI_DIR = Path(__file__).parent.parent / "ui"
UI_URL = "/ui"
# No inline script or style, nothing from another origin: model output rendered as HTML cannot run anything.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class PlaygroundPage(OpenAPIRenderPlugin):
    """The page at GET /. Litestar's OpenAPI router owns "/" (it serves its default render plugin there), so
    the playground is that plugin; Swagger UI keeps /swagger-ui. Disabled, it answers 404."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(path="/")
        self.enabled = enabled
        self.page = (UI_DIR / "index.html").read_bytes() if enabled else b""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if not self.enabled:
            raise NotFoundException()
        # The page's links are relative ("./ui/app.js"): right at the root, and behind a proxy that strips a
        # prefix the service does not know of. Under a known root they are made absolute, so that the page
        # works at "/llm" as at "/llm/" (the CSP's base-uri 'none' rules out a <base> element).
        root = app_root(request.scope)
        return self.page.replace(b'="./', f'="{root}/'.encode()) if root else self.page


def ui_router() -> Router:
    return create_static_files_router(UI_URL, directories=[UI_DIR], include_in_schema=False)


def with_content_security_policy(app: ASGIApp) -> ASGIApp:
    """Adds the CSP (and no caching of the page) to every response under / and /ui/."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != ScopeType.HTTP or not (path == "/" or path.startswith(UI_URL + "/")):
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                if path == "/":
                    headers.append((b"cache-control", b"no-cache"))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped
