"""Several models in a real Granian process: concurrent first requests for a lazy model share one load, and
unloading a model gives its memory back (the worker's resident set falls)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from llm_inference.model_spec import EMBEDDED_MODEL
from tests.server import ServerProcess
from tests.telemetry.scrape import Scrape

pytestmark = pytest.mark.model

MIB = 1 << 20


def worker_rss(server: ServerProcess) -> float:
    """The resident set of the process that serves (Granian's worker, which holds the models), from its own
    /proc/self/stat as prometheus-client's process collector reads it."""
    return Scrape(httpx.get(server.url + "/metrics").text).value("process_resident_memory_bytes")


def card(server: ServerProcess, model: str) -> dict[str, object]:
    models = httpx.get(server.url + "/api/llms").json()["models"]
    return next(m for m in models if m["id"] == model)


def log_records(server: ServerProcess, message: str) -> list[dict[str, object]]:
    records = []
    for line in server.logs().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("message") == message:
                records.append(record)
    return records


def test_concurrent_first_requests_share_one_load_and_an_unload_gives_the_memory_back(
    second_model: str, tmp_path: Path
) -> None:
    env = {"LLM_ALLOWED_MODELS": f"{EMBEDDED_MODEL},{second_model}", "LLM_MAX_CONCURRENT_REQUESTS": "4"}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200)
        rss_before = worker_rss(server)
        body = {"prompt": "Say hi", "model": second_model, "max_tokens": 3}
        with ThreadPoolExecutor(4) as pool:
            requests = [pool.submit(httpx.post, server.url + "/api/generate", json=body, timeout=120) for _ in range(4)]
            waiting_at_once = 0
            while not all(request.done() for request in requests):
                seen = card(server, second_model)
                if seen["state"] == "loading":
                    waiting_at_once = max(waiting_at_once, int(seen["in_flight"]))  # type: ignore[call-overload]
                time.sleep(0.02)
        for request in requests:
            response = request.result()
            assert response.status_code == 200, response.text
            assert response.json()["model"] == second_model
        assert waiting_at_once == 4, "the four requests waited on the load together"
        assert card(server, second_model)["loads"] == 1
        assert [r["model"] for r in log_records(server, "loading model")] == [EMBEDDED_MODEL, second_model]
        assert Scrape(httpx.get(server.url + "/metrics").text).value("llm_model_loads_total", model=second_model) == 1

        rss_loaded = worker_rss(server)
        unloaded = httpx.post(f"{server.url}/api/llms/{second_model}/unload")
        assert unloaded.status_code == 200 and unloaded.json()["state"] == "not_loaded", unloaded.text
        rss_after = worker_rss(server)
        grown = rss_loaded - rss_before
        # The Q8_0 copy's weights (136 MiB, mapped and read by the warm-up) and its KV cache: well over 100 MiB.
        assert grown > 100 * MIB, f"loading grew the worker by {grown / MIB:.0f} MiB"
        assert rss_after - rss_before < 0.2 * grown, (
            f"before {rss_before / MIB:.0f} MiB, loaded {rss_loaded / MIB:.0f} MiB, unloaded {rss_after / MIB:.0f} MiB"
        )
        assert log_records(server, "unloading model")[0]["model"] == second_model
        assert server.stop() == 0
