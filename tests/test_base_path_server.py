"""LLM_BASE_PATH=/llm in a real Granian process: every route under /llm, as an ingress that forwards the prefix
unstripped sends it; nothing outside it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.api.sse import joined_text, parse_events
from tests.server import ServerProcess

pytestmark = pytest.mark.model

QUESTION = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("base-path") / "server.log"
    with ServerProcess({"LLM_BASE_PATH": "/llm"}, log_path=log) as process:
        process.wait_for("/llm/health/ready", 200)
        yield process
    assert "Traceback" not in process.logs()


def test_probes_models_metrics_and_generation_answer_under_the_prefix(server: ServerProcess) -> None:
    base = server.url + "/llm"
    assert httpx.get(base + "/health/live").status_code == 200
    assert httpx.get(base + "/v1/models").json()["data"][0]["id"] == "smollm2-135m-instruct"
    assert 'route="/health/ready"' in httpx.get(base + "/metrics").text
    answer = httpx.post(
        base + "/api/generate", json={"prompt": "The capital of France is", "max_tokens": 4}, timeout=60
    )
    assert answer.status_code == 200 and answer.json()["text"]
    stream = httpx.post(base + "/api/generate/stream", json={"prompt": "Hello", "max_tokens": 4}, timeout=60)
    assert joined_text(parse_events(stream.text))


def test_nothing_answers_outside_the_prefix(server: ServerProcess) -> None:
    for path in ("/health/ready", "/v1/models", "/"):
        response = httpx.get(server.url + path)
        assert response.status_code == 404
        assert "this service answers under /llm/" in response.json()["error"]["message"]


def test_the_playground_and_swagger_ui_are_served_with_their_links_under_the_prefix(server: ServerProcess) -> None:
    page = httpx.get(server.url + "/llm/")
    assert page.status_code == 200
    links = set(re.findall(r'(?:src|href)="(/[^"]*)"', page.text))
    assert links == {"/llm/ui/style.css", "/llm/ui/app.js", "/llm/swagger-ui"}
    for link in links:
        assert httpx.get(server.url + link).status_code == 200, link
    assert httpx.get(server.url + "/llm").text == page.text
    swagger = httpx.get(server.url + "/llm/swagger-ui")
    assets = re.findall(r'(?:src|href)="([^"]+)"', swagger.text)
    assert assets and all(httpx.get(server.url + asset).status_code == 200 for asset in assets), assets
    assert all(asset.startswith("/llm/swagger-ui/assets/") for asset in assets)
    assert httpx.get(server.url + "/llm/openapi.json").json()["servers"] == [{"url": "/llm"}]


def test_the_websocket_answers_under_the_prefix(server: ServerProcess) -> None:
    url = server.url.replace("http", "ws", 1) + "/llm/api/chat/ws"
    with connect(url, open_timeout=30) as socket:
        socket.send(json.dumps({"messages": QUESTION, "max_tokens": 8, "temperature": 0}))
        events: list[dict[str, object]] = []
        while not events or events[-1]["type"] not in {"done", "error"}:
            events.append(json.loads(socket.recv(timeout=120)))
    assert events[-1]["type"] == "done", events[-1]


def test_a_bad_base_path_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    with ServerProcess({"LLM_BASE_PATH": "llm/"}, log_path=tmp_path / "server.log") as process:
        assert process.process is not None and process.process.wait(60) == 2
    assert "LLM_BASE_PATH='llm/' is invalid: expected a path that starts with /" in process.logs()
