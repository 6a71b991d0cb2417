"""A wedged vLLM engine: its engine core process frozen (SIGSTOP) while a stream runs. vLLM's own health check
keeps passing in that state; the stall watchdog turns readiness 503 with the reason, and back once it moves."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import psutil
import pytest

from tests.api.sse import parse_events
from tests.server import ServerProcess
from tests.vllm.conftest import START_TIMEOUT, VLLM_CPU_ENV

pytestmark = pytest.mark.model


def test_a_frozen_engine_core_turns_readiness_503_until_it_moves(model_dir: Path, tmp_path: Path) -> None:
    env = {**VLLM_CPU_ENV, "LLM_ALLOWED_MODELS": str(model_dir), "LLM_ENGINE_STALL_SECONDS": "2"}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200, timeout=START_TIMEOUT)
        children = psutil.Process(server.process.pid).children(recursive=True)  # type: ignore[union-attr]
        [core] = [p for p in children if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()]

        first_delta, body = threading.Event(), []

        def stream() -> None:
            request = {"prompt": "Count from 1 to 500: 1, 2,", "max_tokens": 300, "temperature": 0, "ignore_eos": True}
            with httpx.stream("POST", server.url + "/api/generate/stream", json=request, timeout=300) as response:
                for text in response.iter_text():
                    body.append(text)
                    first_delta.set()

        reader = threading.Thread(target=stream)
        reader.start()
        try:
            assert first_delta.wait(120)
            core.suspend()
            ready = server.wait_for("/health/ready", 503, timeout=30)
            assert ready.json()["reason"].startswith("engine stalled: 1 request(s) waiting and no decode progress")
            assert httpx.get(server.url + "/health/live").status_code == 200  # a stall can end: no restart
        finally:
            core.resume()
        reader.join(300)
        server.wait_for("/health/ready", 200, timeout=30)
        done = parse_events("".join(body))[-1]
        assert done["type"] == "done" and done["usage"]["completion_tokens"] == 300, done
