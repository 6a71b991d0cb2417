"""create_app as a library: the service mounted under /ai inside a host Litestar application, on the real model.

Every route answers under the prefix, the Swagger UI and the OpenAPI document point at it, the playground's page
links and its script's API calls resolve under it, and the SSE streams and the WebSocket work through the mount.
"""

from __future__ import annotations

import re
import sys
import types
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from llm_inference.app import create_app, mounted
from tests.api.sse import joined_text, parse_events
from tests.conftest import TEST_ENV, make_settings
from tests.polling import wait_until_async

pytestmark = pytest.mark.model

QUESTION = [{"role": "user", "content": "Say hello."}]
MODEL = "smollm2-135m-instruct"


PAGE = Path(__file__).resolve().parents[2] / "docs" / "embedding.md"


def host_app() -> Litestar:
    """The host application docs/embedding.md shows, built by running its block as written (with the tests'
    LLM_* settings in the environment)."""
    [block] = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    # A module of its own, as the reader's file would be (Litestar reads handlers' annotations from their module).
    module = types.ModuleType("embedding_example")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, module.__name__, module)
        for name, value in TEST_ENV.items():
            patch.setenv(name, value)
        exec(compile(block, str(PAGE), "exec"), module.__dict__)
    app = module.app
    assert isinstance(app, Litestar)
    return app


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(host_app(), timeout=120) as client:
        await wait_until_async(
            lambda: client.get("/ai/health/ready"),
            until=lambda response: response.status_code == 200,
            timeout=120,
            what="/ai/health/ready to answer 200",
            interval=0.1,
        )
        yield client


async def test_the_hosts_own_routes_stay_its_own(host: AsyncTestClient[Litestar]) -> None:
    assert (await host.get("/")).text == "the host's own page"
    assert (await host.get("/api/llms")).status_code == 404  # the service answers under /ai only


async def test_every_route_of_the_openapi_document_answers_under_the_prefix(host: AsyncTestClient[Litestar]) -> None:
    document = (await host.get("/ai/openapi.json")).json()
    assert document["servers"] == [{"url": "/ai"}]
    checked = 0
    for path, operations in document["paths"].items():
        # A path parameter gets a value that names nothing: the route answers (404 for an unknown model or
        # session), it just must not be "no endpoint here". Bodies are empty objects: 422, nothing generated.
        concrete = re.sub(r"\{[^}]+\}", "nothing-here", path)
        if path == "/api/llms/{target}":
            concrete += "/load"  # {model id}/load or /unload
        for method in operations:
            if method not in {"get", "post", "delete", "put", "patch"}:
                continue
            body: dict[str, Any] = {"json": {}} if method in {"post", "put", "patch"} else {}
            response = await host.request(method.upper(), "/ai" + concrete, **body)
            assert "there is no endpoint" not in response.text, (method, path, response.text)
            assert response.status_code != 405, (method, path)
            checked += 1
    assert checked >= 15


async def test_probes_metrics_and_model_lists(host: AsyncTestClient[Litestar]) -> None:
    assert (await host.get("/ai/health/live")).status_code == 200
    assert (await host.get("/ai/health/ready")).status_code == 200
    metrics = await host.get("/ai/metrics")
    # The route label is the service's own route, wherever it is mounted (dashboards and alerts keep working).
    assert metrics.status_code == 200 and 'route="/health/ready"' in metrics.text
    assert (await host.get("/ai/v1/models")).json()["data"]
    assert (await host.get("/ai/api/llms")).json()["models"]


async def test_generate_and_both_sse_streams(host: AsyncTestClient[Litestar]) -> None:
    whole = await host.post("/ai/api/generate", json={"prompt": "The capital of France is", "max_tokens": 4})
    assert whole.status_code == 200 and whole.json()["text"]
    native = await host.post("/ai/api/chat/stream", json={"messages": QUESTION, "max_tokens": 8, "temperature": 0})
    assert native.headers["content-type"].startswith("text/event-stream")
    assert joined_text(parse_events(native.text))
    openai = await host.post(
        "/ai/v1/chat/completions",
        json={"model": MODEL, "messages": QUESTION, "max_tokens": 8, "temperature": 0, "stream": True},
    )
    chunks = parse_events(openai.text)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_openai_errors_keep_openais_shape_under_the_prefix(host: AsyncTestClient[Litestar]) -> None:
    response = await host.post("/ai/v1/chat/completions", json={"model": "no-such-model", "messages": QUESTION})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


async def test_the_websocket_answers_under_the_prefix(host: AsyncTestClient[Litestar]) -> None:
    with await host.websocket_connect("/ai/api/chat/ws") as socket:
        socket.send_json({"messages": QUESTION, "max_tokens": 8, "temperature": 0})
        events = []
        while not events or events[-1]["type"] not in {"done", "error"}:
            events.append(socket.receive_json(timeout=120))
    assert events[-1]["type"] == "done", events[-1]
    assert "".join(e["text"] for e in events if e["type"] == "delta")


async def test_swagger_ui_loads_its_assets_and_the_document_from_under_the_prefix(
    host: AsyncTestClient[Litestar],
) -> None:
    page = await host.get("/ai/swagger-ui")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(asset.startswith("/ai/swagger-ui/assets/") for asset in assets), assets
    for asset in assets:
        assert (await host.get(asset)).status_code == 200, asset
    # The document is inlined; its servers send "Try it out" to /ai.
    assert '"servers":[{"url":"/ai"}]' in page.text


@pytest.mark.parametrize("page_path", ["/ai", "/ai/"])
async def test_the_playground_links_and_api_calls_resolve_under_the_prefix(
    host: AsyncTestClient[Litestar], page_path: str
) -> None:
    page = await host.get(page_path)
    assert page.status_code == 200 and "content-security-policy" in page.headers
    page_url = "http://testserver.local" + page_path
    links = [urllib.parse.urljoin(page_url, link) for link in re.findall(r'(?:src|href)="([^"]+)"', page.text)]
    links = [link for link in links if link.startswith("http")]
    assert {urllib.parse.urlsplit(link).path for link in links} >= {
        "/ai/ui/app.js",
        "/ai/ui/style.css",
        "/ai/swagger-ui",
    }
    for link in links:
        assert (await host.get(urllib.parse.urlsplit(link).path)).status_code == 200, link
    # The script finds the API from its own URL: new URL("..", import.meta.url), then "api/..." from there.
    script = (await host.get("/ai/ui/app.js")).text
    api_paths = re.findall(r'new URL\("([^"]+)", ROOT\)', script)
    assert api_paths == ["api/llms", "api/chat/stream"]
    root = urllib.parse.urljoin("http://testserver.local/ai/ui/app.js", "..")
    for api_path in api_paths:
        assert urllib.parse.urljoin(root, api_path).startswith("http://testserver.local/ai/api/")
    assert (await host.get("/ai/api/llms")).status_code == 200


def test_a_mount_path_must_be_a_prefix() -> None:
    with pytest.raises(ValueError, match="a path that starts with /"):
        mounted(create_app(make_settings()), "ai/")
