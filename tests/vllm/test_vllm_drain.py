"""Graceful drain with the vLLM backend: streams in flight finish on SIGTERM, and vLLM's engine-core process
(a child of Granian's worker) is gone once the service has exited."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from tests.api.sse import parse_events
from tests.polling import wait_until
from tests.server import ServerProcess
from tests.vllm.conftest import START_TIMEOUT, VLLM_CPU_ENV

pytestmark = pytest.mark.model


def test_sigterm_drains_vllm_streams_and_stops_the_engine_core(model_dir: Path, tmp_path: Path) -> None:
    env = {**VLLM_CPU_ENV, "LLM_ALLOWED_MODELS": str(model_dir), "LLM_SHUTDOWN_GRACE_SECONDS": "300"}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200, timeout=START_TIMEOUT)
        family = psutil.Process(server.process.pid).children(recursive=True)  # type: ignore[union-attr]
        assert len(family) >= 2, "Granian's worker and vLLM's engine core"

        bodies: dict[int, str] = {}
        started = threading.Barrier(3)

        def read(tokens: int) -> None:
            body = {"prompt": "Count from 1 to 200: 1, 2,", "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
            with httpx.stream("POST", server.url + "/api/generate/stream", json=body, timeout=300) as response:
                chunks = response.iter_text()
                text = next(chunks)
                started.wait(120)
                bodies[tokens] = text + "".join(chunks)

        readers = [threading.Thread(target=read, args=(n,)) for n in (48, 64)]
        for reader in readers:
            reader.start()
        started.wait(300)
        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert server.wait_for("/health/ready", 503, timeout=5).json()["reason"].startswith("draining")
        for reader in readers:
            reader.join(300)
        for tokens, body in bodies.items():
            done = parse_events(body)[-1]
            assert done["type"] == "done" and done["usage"]["completion_tokens"] == tokens
        assert server.process.wait(120) == 0  # type: ignore[union-attr]

        def alive() -> list[int]:
            return [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

        # The engine core, a child of the exited worker, may take a moment more to go.
        wait_until(
            alive,
            until=lambda pids: not pids,
            timeout=30,
            what="Granian's worker and vLLM's engine core to be gone (pids still running)",
            interval=0.2,
        )
        assert not alive()
