"""OpenAI's error body on /v1 paths: {"error": {"message", "type", "param", "code"}}.

There is still one mapping from failures to statuses (api/http/errors.py); on /v1 its answer is re-shaped here.
The choice is made by path, not by route, because many errors happen before any /v1 handler is chosen (an
unknown route, a wrong method, a body too large, a refused key or rate limit in the ASGI middleware).
This module imports nothing from api/http/errors.py, which calls it for the middleware's errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar import Request, Response

from llm_inference.api.openai.responses import ErrorDetail, ErrorResponse

PREFIX = "/v1"
# OpenAI's error types by status; every other 4xx is an invalid request, every 5xx a server error.
_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
# `code` is our own error type, except where OpenAI has a name of its own for the same failure.
_CODES = {"unauthorized": "invalid_api_key", "rate_limited": "rate_limit_exceeded"}

Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def is_openai_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def openai_error(status: int, type_: str, message: str, param: str | None) -> tuple[int, ErrorResponse]:
    """The status and body OpenAI's clients expect for one of our errors."""
    if status == 422:  # OpenAI answers every invalid request with 400; its SDKs raise BadRequestError for it
        status = 400
    kind = "server_error" if status >= 500 else _TYPES.get(status, "invalid_request_error")
    return status, ErrorResponse(ErrorDetail(message=message, type=kind, param=param, code=_CODES.get(type_, type_)))


def error_body(status: int, type_: str, message: str, param: str | None = None) -> tuple[int, bytes]:
    status, body = openai_error(status, type_, message, param)
    return status, msgspec.json.encode(body)


def reshape(response: Response[Any]) -> Response[Any]:
    """Our error response (api/http/errors.py's body) as OpenAI's, headers (Retry-After, Allow...) kept."""
    detail = response.content.error
    status, body = openai_error(response.status_code or 500, detail.type, detail.message, detail.param)
    return Response(body, status_code=status, headers=dict(response.headers), media_type="application/json")


def _by_path(native: Handler) -> Handler:
    def handle(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
        response = native(request, exc)
        return reshape(response) if is_openai_path(request.scope["path"]) else response

    return handle


def path_aware(handlers: Mapping[Any, Handler]) -> dict[Any, Handler]:
    """The app's exception handlers, answering in OpenAI's shape on /v1 paths and unchanged elsewhere."""
    return {exc_type: _by_path(handler) for exc_type, handler in handlers.items()}
