"""under_prefix: what the app inside sees of LLM_BASE_PATH and of an ASGI root_path (model-free; the service itself
under a prefix: tests/api/test_embedding.py in-process, tests/test_base_path_server.py in Granian)."""

from __future__ import annotations

import json
from typing import Any

from litestar.types import Receive, Scope, Send

from llm_inference.api.http.base_path import ROOT_KEY, under_prefix


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = json.dumps({"path": scope["path"], "root_path": scope["root_path"], "root": scope[ROOT_KEY]})  # type: ignore[typeddict-item]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})


async def call(base_path: str | None, path: str, root_path: str = "") -> tuple[int, dict[str, Any]]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": path, "root_path": root_path, "headers": []}
    await under_prefix(echo, base_path)(scope, receive, send)  # type: ignore[arg-type]
    return sent[0]["status"], json.loads(sent[1]["body"])


async def test_the_app_sees_paths_relative_to_its_base_path_and_the_root_beside_them() -> None:
    assert await call("/llm", "/llm/health/ready") == (200, {"path": "/health/ready", "root_path": "", "root": "/llm"})
    assert (await call("/llm", "/llm"))[1]["path"] == "/"
    assert (await call(None, "/health/ready"))[1] == {"path": "/health/ready", "root_path": "", "root": ""}


async def test_a_model_name_holding_the_prefix_is_left_whole() -> None:
    # Litestar's router cuts a path at the first occurrence of root_path anywhere in it; the app gets none.
    _, seen = await call("/llm", "/llm/api/llms/acme/llm-7b/load")
    assert seen["path"] == "/api/llms/acme/llm-7b/load"


async def test_outside_the_base_path_is_a_404_naming_the_prefix() -> None:
    for path in ("/health/ready", "/llmx/health/ready", "/"):
        status, body = await call("/llm", path)
        assert status == 404
        assert body["error"]["type"] == "not_found" and "this service answers under /llm/" in body["error"]["message"]


async def test_a_servers_root_path_comes_before_the_base_path() -> None:
    # The ASGI spec's reading (path includes root_path), and the older one (path is what follows it).
    full = await call("/llm", "/proxy/llm/v1/models", root_path="/proxy")
    stripped = await call("/llm", "/llm/v1/models", root_path="/proxy")
    assert full == stripped == (200, {"path": "/v1/models", "root_path": "", "root": "/proxy/llm"})
