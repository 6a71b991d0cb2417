"""One mapping from every failure to a status code and the one JSON error body; a 500 never leaks details."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
import msgspec.inspect
from litestar import Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Message, Receive, Scope, Send

from llm_inference.api.http import field_rules
from llm_inference.api.http.json_body import InvalidJsonBody, body_type
from llm_inference.api.openai import errors as openai_errors
from llm_inference.errors import RetryLater, ServiceError

log = logging.getLogger(__name__)


# The one error body of every path but OpenAI's (/v1), whose shape api/openai/errors.py gives it.
class FieldError(msgspec.Struct):
    param: str
    message: str


class ErrorDetail(msgspec.Struct):
    type: str
    message: str
    param: str | None = None
    # Every invalid field, when a request has more than one (`message` then names them all, `param` the first).
    errors: list[FieldError] | msgspec.UnsetType = msgspec.UNSET


class ErrorResponse(msgspec.Struct):
    error: ErrorDetail


_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "not_ready",
}
# msgspec reports where a value failed as "... - at `$.messages[0].role`", and which field is missing or
# unknown as "Object missing required field `prompt`" / "Object contains unknown field `x`". Only the field and
# the kind of failure are read from its text; the rule in the message is ours (api/http/field_rules.py).
_FIELD_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")
_MISSING_FIELD = re.compile(r"missing required field `(?P<name>[^`]+)`")
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<name>[^`]+)`")


def error_response(
    status: int, type_: str, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> Response[ErrorResponse]:
    return Response(
        ErrorResponse(ErrorDetail(type=type_, message=message, param=param)),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


async def send_error(
    send: Send, status: int, type_: str, message: str, headers: dict[str, str], path: str = ""
) -> None:
    """Answer with the JSON error body from ASGI middleware, which runs outside the exception handlers;
    on OpenAI's paths (/v1) in OpenAI's shape."""
    if openai_errors.is_openai_path(path):
        status, body = openai_errors.error_body(status, type_, message)
    else:
        body = msgspec.json.encode(ErrorResponse(ErrorDetail(type=type_, message=message)))
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def refuse(
    scope: Scope, receive: Receive, send: Send, status: int, type_: str, message: str, headers: dict[str, str]
) -> None:
    """send_error for an HTTP request or a WebSocket handshake. A handshake is refused with the same status
    and body where the server offers ASGI's denial response (Granian does), else closed (the server answers
    403)."""
    if scope["type"] != ScopeType.WEBSOCKET:
        await send_error(send, status, type_, message, headers, path=scope["path"])
        return
    await receive()  # websocket.connect: the handshake, answered by what follows
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008, "reason": type_})
        return

    async def as_denial(event: Message) -> None:
        await send({**event, "type": "websocket." + event["type"]})  # type: ignore[arg-type,typeddict-item]

    await send_error(as_denial, status, type_, message, headers)


def service_error_handler(_: Request[Any, Any, Any], exc: ServiceError) -> Response[ErrorResponse]:
    headers = None
    if isinstance(exc, RetryLater):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    if exc.status_code >= 500:
        log.warning("request failed", extra={"error_type": exc.type, "error": exc.message})
    return error_response(exc.status_code, exc.type, exc.message, exc.param, headers)


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def describe_invalid(root: msgspec.inspect.Type | None, detail: str, key: str = "") -> tuple[str, str, str]:
    """(type, message, param) for msgspec's validation failure `detail` of a request of type `root`, the
    message in our words. `key` is where Litestar placed the failure, when it did. Also used for requests
    that arrive outside HTTP bodies (WebSocket messages), so both answer alike."""
    located = _FIELD_PATH.search(detail)
    path = located["path"] if located else (key if key != "data" else "")
    if missing := _MISSING_FIELD.search(detail):
        param = _join(path, missing["name"])
        return "invalid_parameter", f"{param}: is required", param
    if unknown := _UNKNOWN_FIELD.search(detail):
        param = _join(path, unknown["name"])
        parent = field_rules.field_type(root, path) if path and root is not None else root
        accepted = ", ".join(field_rules.field_names(parent))
        return "invalid_parameter", f"{param}: unknown field; accepted fields are {accepted}", param
    info = field_rules.field_type(root, path) if root is not None else None
    if info is None:  # a failure we cannot place: say so, with the library's detail as a suffix
        return "invalid_parameter", f"the request is invalid ({detail})", path
    if not path:
        return "invalid_parameter", f"the body must be {field_rules.describe(info)}", path
    return "invalid_parameter", f"{path}: must be {field_rules.describe(info)}", path


def invalid_request(root: msgspec.inspect.Type | None, details: list[tuple[str, str]]) -> ErrorDetail:
    """One error for every invalid field: each described by describe_invalid from (msgspec's detail, the key
    Litestar placed it at), the messages joined, `param` the first field and `errors` each field's rule."""
    described = [describe_invalid(root, detail, key) for detail, key in details]
    if len(described) == 1:
        type_, message, param = described[0]
        return ErrorDetail(type=type_, message=message, param=param or None)
    fields = [FieldError(param=param, message=message) for _, message, param in described]
    message = f"{len(fields)} fields are invalid: " + "; ".join(field.message for field in fields)
    return ErrorDetail(type="invalid_parameter", message=message, param=fields[0].param or None, errors=fields)


def _validation_detail(request: Request[Any, Any, Any], exc: ValidationException) -> ErrorDetail:
    """Litestar's body validation error (one item per invalid field when JsonBodyRequest found them) as ours."""
    # `key`: Litestar's own reading of the location, when it made one
    details = [
        (str(item.get("message", exc.detail)), str(item.get("key") or ""))
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    if not details:
        return ErrorDetail(type="bad_request", message="the request is invalid")
    return invalid_request(body_type(request.route_handler), details)


def validation_error_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorResponse]:
    detail = _validation_detail(request, exc)
    status = 400 if detail.type in {"invalid_json", "bad_request"} else 422
    return Response(ErrorResponse(detail), status_code=status, media_type="application/json")


def _our_words(request: Request[Any, Any, Any], exc: HTTPException) -> str:
    """The message for an HTTP error, in our words where Litestar raised it with its own."""
    match exc:
        case NotFoundException():
            return f"there is no endpoint at {request.url.path} (see /swagger-ui for the API)"
        case MethodNotAllowedException():
            # Litestar names the header in lower case ("allow"); HTTP header names are case-insensitive.
            allowed = next((v for k, v in (exc.headers or {}).items() if k.lower() == "allow"), "")
            return f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        case RequestEntityTooLarge():
            limit = request.route_handler.resolve_request_max_body_size()
            return f"the body is larger than LLM_MAX_REQUEST_BYTES={limit} bytes"
    return str(exc.detail)


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    status = exc.status_code
    cause = exc.__cause__
    if isinstance(cause, InvalidJsonBody):
        return error_response(400, "invalid_json", str(cause))
    if isinstance(cause, SerializationException):  # Litestar could not decode the body
        return error_response(400, "invalid_json", f"the body is not valid JSON ({cause})")
    if status >= 500:
        log.error("http error", extra={"status": status})
        return error_response(status, "internal_error", "internal server error")
    message = _our_words(request, exc)
    return error_response(status, _HTTP_TYPES.get(status, "bad_request"), message, None, exc.headers)


def unexpected_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    log.exception("unhandled error", exc_info=exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal server error")


exception_handlers = {
    ServiceError: service_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
