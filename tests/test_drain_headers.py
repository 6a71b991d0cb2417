"""GracefulDrain's Connection header while draining: on HTTP/1.x only (RFC 9113 forbids it in HTTP/2)."""

from __future__ import annotations

from typing import Any

from llm_inference.api.http.drain import GracefulDrain


class _Service:
    draining = True


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


async def _response_headers(http_version: str) -> list[tuple[bytes, bytes]]:
    drain = GracefulDrain(_answer, _Service(), grace_seconds=1)  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "http_version": http_version, "method": "GET", "path": "/", "headers": []}
    await drain(scope, receive, send)  # type: ignore[arg-type]
    return list(sent[0]["headers"])


async def test_draining_says_connection_close_on_http1_only() -> None:
    assert (b"connection", b"close") in await _response_headers("1.1")
    assert all(name != b"connection" for name, _ in await _response_headers("2"))
