"""Request bodies are JSON: 415 for a body declared as anything else, 400 for one that does not decode."""

from __future__ import annotations

from typing import Any

import msgspec.inspect
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import ClientException, HTTPException, SerializationException, ValidationException
from litestar.handlers.base import BaseRouteHandler

from llm_inference.api.http import field_rules, invalid_fields

BODY_METHODS = {"POST", "PUT", "PATCH"}
EMPTY_BODY = "the body is empty: send a JSON object"


def _json_problem(content_type: str) -> str | None:
    media_type, *params = (part.strip().lower() for part in content_type.split(";"))
    structured_json = media_type.startswith("application/") and media_type.endswith("+json")
    if media_type != "application/json" and not structured_json:
        return f"Content-Type {media_type!r} is not supported: send application/json"
    charset = next((p.split("=", 1)[1].strip('"') for p in params if p.startswith("charset=")), "utf-8")
    if charset not in {"utf-8", "utf8"}:
        return f"charset {charset!r} is not supported: JSON bodies are UTF-8"
    return None


async def require_json_body(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """A guard: runs before the body is decoded, so a form post or an upload is refused undecoded.
    A missing Content-Type is taken as JSON, for the simplest clients; a route with `opt={"body_optional":
    True}` takes no body as its defaults, and one with `opt={"no_body": True}` reads none."""
    if connection.scope.get("method") not in BODY_METHODS or handler.opt.get("no_body"):
        return
    content_type = connection.headers.get("content-type")
    problem = _json_problem(content_type) if content_type is not None else None
    if problem:
        raise HTTPException(status_code=415, detail=problem)
    # Litestar would skip an empty body and report a missing parameter named `data`.
    if isinstance(connection, Request) and not handler.opt.get("body_optional") and not await connection.body():
        empty = InvalidJsonBody(EMPTY_BODY)
        raise ClientException(str(empty)) from empty


class InvalidJsonBody(SerializationException):
    """A body that does not decode, with the reason in our words (the library's detail at most a suffix)."""


def invalid_json_reason(body: bytes, error: Exception) -> str:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not UTF-8: byte {exc.start} is not part of a valid character"
    if isinstance(error, RecursionError) or "deep" in str(error).lower():
        return "the body is nested too deeply"
    return f"the body is not valid JSON ({error})"


_body_types: dict[int, msgspec.inspect.Type | None] = {}


def body_annotation(route_handler: BaseRouteHandler) -> Any:
    """The annotation of the handler's JSON body (its `data` parameter), or None."""
    data = route_handler.parsed_fn_signature.parameters.get("data")
    return data.annotation if data is not None else None


def body_type(route_handler: BaseRouteHandler) -> msgspec.inspect.Type | None:
    """The type of the handler's JSON body, if any, as msgspec describes it; looked up once per handler."""
    key = id(route_handler)
    if key not in _body_types:
        annotation = body_annotation(route_handler)
        _body_types[key] = field_rules.request_type_info(annotation) if annotation is not None else None
    return _body_types[key]


class JsonBodyRequest(Request[Any, Any, Any]):
    """Decode failures of every kind (malformed JSON, bytes that are not UTF-8, nesting past the recursion
    limit, which Litestar would let through as a 500) become a 400 that states the rule in our words.

    A decoded body is also checked for what only lenient conversion accepts: Litestar converts bodies as it
    must convert query strings, so `"stream": 0` or `"max_tokens": "5"` would pass for a bool or an int, which
    the documented schema (and clients' own validators) refuse. An invalid body is answered with every invalid
    field at once, not only the first that Litestar would stop at."""

    async def json(self) -> Any:
        try:
            value = await super().json()
        except (SerializationException, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidJsonBody(invalid_json_reason(await self.body(), exc)) from None
        expected = body_type(self.route_handler)
        if expected is None:
            return value
        if found := invalid_fields.failures(body_annotation(self.route_handler), expected, value):
            # The shape of Litestar's own validation errors, one item per invalid field; api/http/errors.py words
            # each field's rule. A body valid field by field but not as a whole is left to Litestar.
            raise ValidationException("the body is invalid", extra=[{"message": detail} for detail in found])
        return value
