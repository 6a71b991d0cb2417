"""create_app(settings): the Litestar application with its routes, middleware, docs and lifespan; mounted(app, path)
serves it inside a host Litestar application (docs/embedding.md)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, asgi
from litestar.datastructures import State
from litestar.handlers import ASGIRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.types import Receive, Scope, Send

from llm_inference.api.health import live, ready
from llm_inference.api.http.access import access_middleware, is_limited
from llm_inference.api.http.arrivals import count_arrivals
from llm_inference.api.http.base_path import app_root, under_prefix
from llm_inference.api.http.cors import cors
from llm_inference.api.http.errors import exception_handlers
from llm_inference.api.http.json_body import JsonBodyRequest, require_json_body
from llm_inference.api.native.batch import batch_generate
from llm_inference.api.native.chat import ChatController
from llm_inference.api.native.chat_socket import chat_socket
from llm_inference.api.native.embeddings import embeddings
from llm_inference.api.native.generate import GenerateController
from llm_inference.api.native.models import list_models, load_or_unload
from llm_inference.api.native.openapi import correct_openapi
from llm_inference.api.native.sessions import SessionController
from llm_inference.api.native.tokens import TokensController
from llm_inference.api.openai.errors import path_aware
from llm_inference.api.openai.router import openai_router
from llm_inference.api.playground import PlaygroundPage, ui_router, with_content_security_policy
from llm_inference.auth_keys import ApiKeys
from llm_inference.models.registry import ModelRegistry
from llm_inference.service import InferenceService, Sessions
from llm_inference.settings import Settings, base_path_problem
from llm_inference.state.limits import Limits, LocalLimits
from llm_inference.telemetry.instrument import Telemetry
from llm_inference.telemetry.metrics import metrics_endpoint

if TYPE_CHECKING:
    from llm_inference.state.store import StateStore

log = logging.getLogger(__name__)

SWAGGER_ASSETS = Path(__file__).parent / "api" / "static" / "swagger-ui"
SWAGGER_ASSETS_URL = "/swagger-ui/assets"


def _with_servers(openapi_schema: dict[str, Any], root: str) -> dict[str, Any]:
    # Under a prefix, "Try it out" and generated clients must call <root>/api/..., not /api/...
    return {**openapi_schema, "servers": [{"url": root}]} if root else openapi_schema


def _swagger_ui(root: str) -> SwaggerRenderPlugin:
    # Swagger UI 5.x, served from the package: no CDN, so the docs work in an air-gapped cluster.
    assets = root + SWAGGER_ASSETS_URL
    return SwaggerRenderPlugin(
        path="/swagger-ui",
        js_url=f"{assets}/swagger-ui-bundle.js",
        css_url=f"{assets}/swagger-ui.css",
        standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
        favicon=f'<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">',
    )


class SwaggerPage(SwaggerRenderPlugin):
    """Swagger UI at /swagger-ui, its assets and the document's `servers` under the root the app is served at."""

    def __init__(self) -> None:
        super().__init__(path="/swagger-ui")
        self._by_root: dict[str, SwaggerRenderPlugin] = {}

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        root = app_root(request.scope)
        plugin = self._by_root.get(root) or self._by_root.setdefault(root, _swagger_ui(root))
        return plugin.render(request, _with_servers(openapi_schema, root))


class OpenApiDocument(JsonRenderPlugin):
    """/openapi.json, its `servers` naming the root the app is served at."""

    def __init__(self) -> None:
        super().__init__(path="/openapi.json")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, _with_servers(openapi_schema, app_root(request.scope)))


def _openapi_config(settings: Settings) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="llm-inference",
        version=version("llm-inference"),
        description="LLM inference over HTTP: generate and chat, whole or streamed as Server-Sent Events.",
        path="/",
        # The playground is the plugin at "/" (404 when LLM_UI_ENABLED=false); Swagger UI stays at /swagger-ui.
        render_plugins=[PlaygroundPage(settings.ui_enabled), SwaggerPage(), OpenApiDocument()],
    )


def _state(settings: Settings, telemetry: Telemetry) -> tuple[StateStore | None, Limits, Sessions | None]:
    """Where limits and sessions live, chosen once: this process, or the shared store (LLM_STATE_URL)."""
    if settings.state_url is None:
        return None, LocalLimits(), None
    # Imported only here: redis-py costs the worker ~20 MiB of memory, which a single replica does not need.
    from llm_inference.state.session_store import SharedSessions
    from llm_inference.state.shared_limits import SharedLimits
    from llm_inference.state.store import StateStore, StoreConfig

    store = StateStore(StoreConfig.from_settings(settings), observer=telemetry.state)
    limits = SharedLimits(store, fail_open=settings.rate_limit_on_state_failure == "open")
    return store, limits, SharedSessions(store, settings.max_sessions, settings.session_ttl_seconds)


def create_app(settings: Settings) -> Litestar:
    telemetry = Telemetry(settings)
    store, limits, sessions = _state(settings, telemetry)
    service = InferenceService(
        settings=settings,
        registry=ModelRegistry(settings),
        observer=telemetry.inference,
        session_store=sessions,
        required_state=store if settings.state_required_for_readiness else None,
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if store is not None:
            # Said once at start-up (before the model's load, which silences the process's output while it
            # runs); the service starts either way, and reconnects when the store comes.
            problem = await store.ping()
            level = logging.WARNING if problem else logging.INFO
            log.log(level, "shared store: %s", problem or "reachable", extra={"url": store.config.shown_url})
        service.registry.start()
        try:
            yield
        finally:
            await service.registry.aclose()
            await service.aclose()
            if store is not None:
                await store.aclose()
            await telemetry.aclose()

    keys = ApiKeys(settings.api_keys, settings.api_keys_file)
    app = Litestar(
        route_handlers=[
            GenerateController,
            ChatController,
            SessionController,
            embeddings,
            TokensController,
            batch_generate,
            chat_socket,
            list_models,
            load_or_unload,
            openai_router(),
            live,
            ready,
            metrics_endpoint,
            create_static_files_router(SWAGGER_ASSETS_URL, directories=[SWAGGER_ASSETS], include_in_schema=False),
            *([ui_router()] if settings.ui_enabled else []),
        ],
        state=State({"service": service, "telemetry": telemetry}),
        lifespan=[lifespan],
        # Arrivals first: a request counts as on its way to an engine from the moment the app sees it.
        middleware=[count_arrivals, *access_middleware(settings, keys, limits)],
        guards=[require_json_body],
        request_class=JsonBodyRequest,
        # One mapping from failures to statuses; on /v1 paths the body takes OpenAI's shape.
        exception_handlers=path_aware(exception_handlers),  # type: ignore[arg-type]
        request_max_body_size=settings.max_request_bytes,
        openapi_config=_openapi_config(settings),
        logging_config=None,
        debug=False,
    )
    app.asgi_handler = cors(with_content_security_policy(app.asgi_handler), settings.cors_allowed_origins)
    telemetry.instrument(app, service.registry)
    # Outermost: everything inside sees paths relative to the app's root (routes, exempt paths, metric labels).
    app.asgi_handler = under_prefix(app.asgi_handler, settings.base_path)
    correct_openapi(app, settings, auth=keys.enabled, limited=is_limited(settings, keys))
    return app


def mounted(app: Litestar, path: str) -> ASGIRouteHandler:
    """`app` (from create_app) as a route handler of a host Litestar application, answering every route under
    `path` (e.g. "/ai": /ai/v1/chat/completions, /ai/swagger-ui, the playground at /ai/). The host runs the
    app's lifespan, which loads and unloads the models: `Litestar([mounted(llm, "/ai")], lifespan=[llm.lifespan()])`.
    """
    if problem := base_path_problem(path):
        raise ValueError(f"mount path {path!r}: expected {problem}")

    @asgi(path, is_mount=True, copy_scope=True, name=f"llm-inference:{path}")
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        # Litestar hands a mount the rest of the path, with a "/" added; the app is given what an ASGI server
        # gives an app served under a prefix: the whole path, and the prefix as root_path. Its connection
        # state is its own, not the host's.
        root = scope.get("root_path", "").rstrip("/") + path
        rest = scope["path"].rstrip("/")
        await app({**scope, "path": root + rest, "root_path": root, "state": {}}, receive, send)  # type: ignore[arg-type]

    return serve
