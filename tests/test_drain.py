"""Graceful drain on SIGTERM, on a real Granian process with streams in flight (src/llm_inference/api/http/drain.py)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from llm_inference.cli import WORKER_KILL_MARGIN_SECONDS
from tests.api.sse import parse_events
from tests.server import ServerProcess

pytestmark = pytest.mark.model

# SmolLM2 keeps counting past any max_tokens used here, so every request runs exactly max_tokens tokens.
COUNTING = "Count from 1 to 200: 1, 2,"


class Client(threading.Thread):
    """One request in its own thread, recording when its response started and ended."""

    def __init__(self, url: str, max_tokens: int, stream: bool) -> None:
        super().__init__()
        self.url, self.max_tokens, self.stream = url, max_tokens, stream
        self.started = threading.Event()
        self.finished_at = 0.0
        self.body = ""
        self.status = 0
        self.error: Exception | None = None

    def run(self) -> None:
        path = "/api/generate/stream" if self.stream else "/api/generate"
        body = {"prompt": COUNTING, "max_tokens": self.max_tokens, "temperature": 0}
        try:
            with httpx.stream("POST", self.url + path, json=body, timeout=300) as response:
                self.status = response.status_code
                for text in response.iter_text():
                    self.body += text
                    self.started.set()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self.started.set()


def test_sigterm_lets_requests_in_flight_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    env = {"LLM_SHUTDOWN_GRACE_SECONDS": "300"}  # long enough for the streams on a loaded machine
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200)
        streams = [Client(server.url, n, stream=True) for n in (120, 180, 240)]
        whole = Client(server.url, 160, stream=False)
        clients = [*streams, whole]
        for client in clients:
            client.start()
        for client in streams:
            assert client.started.wait(120)  # its first delta arrived: decoding

        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        signalled = time.monotonic()
        ready = server.wait_for("/health/ready", 503, timeout=2)
        assert ready.json() == {"status": "not_ready", "reason": "draining: the service is shutting down"}
        assert ready.headers["connection"] == "close"  # keep-alive clients reconnect elsewhere
        for path in ("/api/generate", "/api/generate/stream"):
            refused = httpx.post(server.url + path, json={"prompt": "Hi", "max_tokens": 2}, timeout=10)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["type"] == "not_ready" and refused.headers["Retry-After"]
        assert httpx.get(server.url + "/health/live", timeout=10).status_code == 200
        assert any(client.is_alive() for client in clients), "requests must still be in flight here"

        for client in clients:
            client.join(300)
            assert client.error is None and client.status == 200, client.error
            assert client.finished_at > signalled
            if client.stream:
                events = parse_events(client.body)  # ends with [DONE]: not cut
                done = events[-1]
                assert done["type"] == "done" and done["usage"]["completion_tokens"] == client.max_tokens
                assert done["finish_reason"] == "length"
            else:
                assert (
                    httpx.Response(200, content=client.body).json()["usage"]["completion_tokens"] == client.max_tokens
                )
        assert server.process.wait(60) == 0  # type: ignore[union-attr]
        assert '"drained: no request in flight"' in server.logs()


def test_requests_still_running_after_the_grace_period_are_cancelled_and_the_process_exits_0(tmp_path: Path) -> None:
    grace = 2
    with ServerProcess({"LLM_SHUTDOWN_GRACE_SECONDS": str(grace)}, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200)
        client = Client(server.url, 1000, stream=True)
        client.start()
        assert client.started.wait(120)
        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        signalled = time.monotonic()
        assert server.process.wait(60) == 0  # type: ignore[union-attr]
        exited = time.monotonic() - signalled
        assert grace <= exited < grace + WORKER_KILL_MARGIN_SECONDS, exited
        client.join(30)
        assert "[DONE]" not in client.body  # cut at the grace period, as documented
        logs = server.logs()
        assert "LLM_SHUTDOWN_GRACE_SECONDS elapsed" in logs and "Killing worker" not in logs


def test_sigterm_with_nothing_in_flight_exits_at_once(tmp_path: Path) -> None:
    with ServerProcess({"LLM_SHUTDOWN_GRACE_SECONDS": "300"}, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < WORKER_KILL_MARGIN_SECONDS
