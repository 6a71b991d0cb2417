"""The service as an operator runs it, observed: a real Granian process exporting traces to a real OTLP/gRPC
receiver in this process, JSON logs at DEBUG level captured to a file, its model downloaded through the real
huggingface-hub path with an HF token set. The tests of this package read its traces, logs and /metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fake_hub import FakeHub
from tests.otlp_receiver import GrpcReceiver
from tests.server import ServerProcess
from tests.telemetry.scrape import Scrape

HUB_REPO = "test-org/smollm2-observed"
HF_TOKEN = "hf_ObservabilityTestToken0123456789abcdef"
SERVICE_NAME = "llm-under-observation"


@dataclass
class Observed:
    server: ServerProcess
    receiver: GrpcReceiver
    model: str

    @property
    def url(self) -> str:
        return self.server.url

    def log_text(self) -> str:
        return self.server.logs()

    def log_entries(self) -> list[dict[str, Any]]:
        """Every log line written so far, each parsed as the one JSON object it must be. A last line without its
        newline is still being written by the server (a long record may reach the file in two writes): it is
        left for a later read rather than parsed in half."""
        text = self.log_text()
        complete = text[: text.rfind("\n") + 1]
        return [_json_line(line) for line in complete.splitlines() if line.strip()]

    def scrape(self) -> Scrape:
        response = httpx.get(self.url + "/metrics", timeout=30)
        assert response.status_code == 200
        return Scrape(response.text)


def _json_line(line: str) -> dict[str, Any]:
    """A complete log line as its JSON object; an AssertionError (which ends a poll at once: the line is whole and
    will not change) if it is not one."""
    try:
        entry = json.loads(line)
    except ValueError:
        entry = None
    assert isinstance(entry, dict), f"a log line that is not one JSON object: {line!r}"
    return entry


@pytest.fixture(scope="package")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observed")
    with GrpcReceiver() as receiver, FakeHub(HUB_REPO) as hub:
        hub.release.set()
        env = {
            "LLM_ALLOWED_MODELS": hub.spec,
            **hub.environment(tmp / "hf"),
            "HF_TOKEN": HF_TOKEN,
            "LLM_LOG_FORMAT": "json",
            "LLM_LOG_LEVEL": "DEBUG",
            "LLM_SERVICE_NAME": SERVICE_NAME,
            "LLM_DEFAULT_MAX_TOKENS": "8",
            # One decode slot, so that concurrent requests visibly queue.
            "LLM_MAX_CONCURRENT_REQUESTS": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-tenant=team-a",
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within 0.2 s instead of 5 s
        }
        with ServerProcess(env, log_path=tmp / "server.log") as server:
            server.wait_for("/health/ready", 200, timeout=300)
            yield Observed(server, receiver, model=hub.spec)
