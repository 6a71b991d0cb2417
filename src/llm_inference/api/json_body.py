"""Request bodies are JSON: 415 for a body declared as anything else, 400 for one that does not decode."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import ClientException, HTTPException, SerializationException
from litestar.handlers.base import BaseRouteHandler

BODY_METHODS = {"POST", "PUT", "PATCH"}


def _json_problem(content_type: str) -> str | None:
    media_type, *params = (part.strip().lower() for part in content_type.split(";"))
    structured_json = media_type.startswith("application/") and media_type.endswith("+json")
    if media_type != "application/json" and not structured_json:
        return f"Content-Type {media_type!r} is not supported: send application/json"
    charset = next((p.split("=", 1)[1].strip('"') for p in params if p.startswith("charset=")), "utf-8")
    if charset not in {"utf-8", "utf8"}:
        return f"charset {charset!r} is not supported: JSON bodies are UTF-8"
    return None


async def require_json_body(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard: runs before the body is decoded, so a form post or an upload is refused undecoded.
    A missing Content-Type is taken as JSON, for the simplest clients."""
    if connection.scope.get("method") not in BODY_METHODS:
        return
    content_type = connection.headers.get("content-type")
    problem = _json_problem(content_type) if content_type is not None else None
    if problem:
        raise HTTPException(status_code=415, detail=problem)
    # Litestar would skip an empty body and report a missing parameter named `data`.
    if isinstance(connection, Request) and not await connection.body():
        empty = SerializationException("the body is empty: send a JSON object")
        raise ClientException(str(empty)) from empty


class JsonBodyRequest(Request[Any, Any, Any]):
    """Litestar turns msgspec's DecodeError into a 400 but lets a body that is not UTF-8 or is nested past the
    recursion limit through as a 500; both are the client's malformed JSON."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except UnicodeDecodeError as exc:
            detail = f"the body is not UTF-8 ({exc.reason} at byte {exc.start})"
            raise SerializationException(detail) from None
        except RecursionError:
            raise SerializationException("the body is nested too deeply") from None
