"""One mapping from every failure to a status code and the one JSON error body; a 500 never leaks details."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Send

from llm_inference.api.schemas import ErrorDetail, ErrorResponse
from llm_inference.errors import RetryLater, ServiceError

log = logging.getLogger(__name__)

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
# unknown as "Object missing required field `prompt`" / "Object contains unknown field `x`".
_FIELD_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")
_NAMED_FIELD = re.compile(r"(?:required|unknown) field `(?P<name>[^`]+)`")
# Rules msgspec words only as "Invalid enum value", completed with what is allowed.
_ALLOWED_VALUES = {"role": "system, user, assistant"}


def error_response(
    status: int, type_: str, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> Response[ErrorResponse]:
    return Response(
        ErrorResponse(ErrorDetail(type=type_, message=message, param=param)),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


async def send_error(send: Send, status: int, type_: str, message: str, headers: dict[str, str]) -> None:
    """Answer with the JSON error body from ASGI middleware, which runs outside the exception handlers."""
    body = msgspec.json.encode(ErrorResponse(ErrorDetail(type=type_, message=message)))
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def service_error_handler(_: Request[Any, Any, Any], exc: ServiceError) -> Response[ErrorResponse]:
    headers = None
    if isinstance(exc, RetryLater):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    if exc.status_code >= 500:
        log.warning("request failed", extra={"error_type": exc.type, "error": exc.message})
    return error_response(exc.status_code, exc.type, exc.message, exc.param, headers)


def _validation_detail(exc: ValidationException) -> tuple[str, str, str | None]:
    """Turn Litestar's body validation error into (type, message, param)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", exc.detail))
        if "malformed" in message.lower() or "json is" in message.lower() or "invalid json" in message.lower():
            return "invalid_json", f"the body is not valid JSON: {message}", None
        match = _FIELD_PATH.search(message)
        key = item.get("key")
        param = match["path"] if match else (key if key and key != "data" else None)
        named = _NAMED_FIELD.search(message)
        if named:
            param = f"{param}.{named['name']}" if param else named["name"]
        rule = _FIELD_PATH.sub("", message)
        if "Invalid enum value" in rule and param:
            allowed = _ALLOWED_VALUES.get(param.rsplit(".", 1)[-1])
            rule += f"; expected one of {allowed}" if allowed else ""
        if param:
            return "invalid_parameter", f"{param}: {rule}", param
        return "invalid_parameter", rule, None
    return "bad_request", str(exc.detail), None


def validation_error_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorResponse]:
    type_, message, param = _validation_detail(exc)
    status = 400 if type_ in {"invalid_json", "bad_request"} else 422
    return error_response(status, type_, message, param)


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    status = exc.status_code
    if isinstance(exc.__cause__, SerializationException):  # Litestar could not decode the body
        return error_response(400, "invalid_json", f"the body is not valid JSON: {exc.__cause__}")
    if status >= 500:
        log.error("http error", extra={"status": status})
        return error_response(status, "internal_error", "internal server error")
    return error_response(status, _HTTP_TYPES.get(status, "bad_request"), str(exc.detail), None, exc.headers)


def unexpected_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    log.exception("unhandled error", exc_info=exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal server error")


exception_handlers = {
    ServiceError: service_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
