"""Overload and gone clients against a real Granian process: nothing hangs, nothing leaks, no 5xx."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.api.sse import parse_events
from tests.polling import wait_until_async
from tests.server import ServerProcess

pytestmark = pytest.mark.model

STREAM = {"prompt": "Count: 1, 2, 3,", "max_tokens": 12, "ignore_eos": True, "temperature": 0}


def rss_bytes(server: ServerProcess) -> int:
    """The server's resident memory: Granian's main process and its worker, which holds the model."""
    assert server.process is not None
    main = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])


def engine_load(url: str) -> tuple[float, float]:
    """Requests the engine is decoding and those waiting for it, from /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*}} (\S+)$", text, flags=re.M))

    assert "llm_num_requests_running" in text, "the engine gauges are missing from /metrics"
    return total("llm_num_requests_running"), total("llm_num_requests_waiting")


async def wait_engine_idle(url: str, timeout: float) -> float:
    """Seconds until the engine holds no request, running or waiting."""
    started = time.monotonic()
    await wait_until_async(
        lambda: asyncio.to_thread(engine_load, url),
        until=lambda load: load == (0, 0),
        timeout=timeout,
        what="the engine to hold no request ((running, waiting) == (0, 0))",
        interval=0.1,
    )
    return time.monotonic() - started


async def watch_liveness(url: str, stop: asyncio.Event) -> list[float]:
    """Answer times of /health/live, asked every 100 ms until `stop`."""
    times = []
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            started = time.monotonic()
            response = await client.get(url + "/health/live")
            assert response.status_code == 200
            times.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
    return times


async def stream_once(client: httpx.AsyncClient, url: str) -> tuple[int, float, str, dict[str, str]]:
    started = time.monotonic()
    async with client.stream("POST", url + "/api/generate/stream", json=STREAM) as response:
        answered = time.monotonic() - started
        body = (await response.aread()).decode()
        return response.status_code, answered, body, dict(response.headers)


def test_a_burst_of_four_times_capacity_completes_or_is_refused_promptly(tmp_path: Path) -> None:
    running, queued = 2, 2
    burst = 4 * (running + queued)
    env = {"LLM_MAX_CONCURRENT_REQUESTS": str(running), "LLM_MAX_QUEUED_REQUESTS": str(queued)}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200)

        async def run() -> tuple[list[tuple[int, float, str, dict[str, str]]], list[float]]:
            stop = asyncio.Event()
            liveness = asyncio.create_task(watch_liveness(server.url, stop))
            limits = httpx.Limits(max_connections=burst + 4)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                results = await asyncio.wait_for(
                    asyncio.gather(*(stream_once(client, server.url) for _ in range(burst))), 300
                )
            stop.set()
            return results, await liveness

        results, liveness = asyncio.run(run())
        statuses = [status for status, *_ in results]
        assert all(status in (200, 429, 503) for status in statuses), statuses
        completed = [body for status, _, body, _ in results if status == 200]
        refused = [(answered, headers) for status, answered, _, headers in results if status != 200]
        assert len(completed) >= running + queued, statuses
        assert refused, "a burst beyond capacity must be refused in part"
        for body in completed:
            assert parse_events(body)[-1]["type"] == "done"
        for answered, headers in refused:
            assert int(headers["retry-after"]) >= 1
            assert answered < 5, f"a refusal took {answered:.1f}s"
        assert liveness and max(liveness) < 1.0, f"/health/live took up to {max(liveness):.2f}s"
        assert "Traceback" not in server.logs()


async def disconnect_mid_stream(client: httpx.AsyncClient, url: str) -> None:
    """Open a long stream, read until the first token arrives, then drop the connection."""
    body = {**STREAM, "max_tokens": 400}
    async with client.stream("POST", url + "/api/generate/stream", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"delta"' in line:
                return


def test_two_hundred_clients_that_leave_mid_stream_free_everything(tmp_path: Path) -> None:
    running, queued = 4, 4
    capacity = running + queued
    env = {
        "LLM_MAX_CONCURRENT_REQUESTS": str(running),
        "LLM_MAX_QUEUED_REQUESTS": str(queued),
        "LLM_MAX_TOKENS_LIMIT": "512",
    }
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200)

        async def wave(client: httpx.AsyncClient) -> None:
            await asyncio.gather(*(disconnect_mid_stream(client, server.url) for _ in range(capacity)))

        async def run() -> dict[str, float]:
            # No keep-alive: leaving a stream early must close its connection, as a gone client does.
            limits = httpx.Limits(max_connections=capacity, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                for _ in range(2):  # warm-up: allocator pools and caches reach their working size
                    await wave(client)
                await wait_engine_idle(server.url, 30)
                rss_before = rss_bytes(server)
                for _ in range(200 // capacity):
                    await wave(client)
                idle_after = await wait_engine_idle(server.url, 30)
                rss_after = rss_bytes(server)
                # The whole capacity serves again: no admission slot or engine slot was left behind.
                answers = await asyncio.gather(
                    *(
                        client.post(server.url + "/api/generate", json={"prompt": "Hi", "max_tokens": 4})
                        for _ in range(capacity)
                    )
                )
                assert [a.status_code for a in answers] == [200] * capacity
            return {"rss_before": rss_before, "rss_after": rss_after, "idle_after": idle_after}

        figures = asyncio.run(run())
        # Each left stream asked for 400 tokens: had they run on, 200 of them would keep the engine busy
        # for minutes, not seconds.
        assert figures["idle_after"] < 10, figures
        grown = (figures["rss_after"] - figures["rss_before"]) / 2**20
        assert grown < 48, f"RSS grew by {grown:.0f} MiB over 200 abandoned streams"
        assert "Traceback" not in server.logs()
