"""Soak: one service process under a bounded mix of streams, abandoned streams, bad input and bursts.

Prints requests by kind and status, the 5xx count, the server's RSS at start and end, and latency
percentiles; writes bench/results/soak-<date>.json. Exits 1 if any request got a 5xx or no answer.

    python -m bench.soak --seconds 300        (make soak SOAK_SECONDS=300; at most 600)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from bench.servers import RunningServer, ServerSpec, free_port

RESULTS = Path(__file__).parent / "results"
MAX_SECONDS = 600
RUNNING, QUEUED = 4, 8
CAPACITY = RUNNING + QUEUED
BURST_EVERY_SECONDS = 30
SERVER_ENV = {
    "LLM_MAX_CONCURRENT_REQUESTS": str(RUNNING),
    "LLM_MAX_QUEUED_REQUESTS": str(QUEUED),
    "LLM_CONTEXT_LENGTH": "1024",
    "LLM_MAX_TOKENS_LIMIT": "512",
    "LLM_MAX_REQUEST_BYTES": "65536",
    "LLM_LOG_FORMAT": "json",
    "LLM_INFERENCE_HOSTNAME": "127.0.0.1",
}
PROMPTS = [
    "The capital of France is",
    "Write a haiku about the sea:",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "To make a cup of tea, first",
]
# Requests the service must refuse with a 4xx: (name, body bytes, content type).
BAD_INPUTS = [
    ("malformed JSON", b'{"prompt": "hi",', "application/json"),
    ("not UTF-8", b'{"prompt": "\xff\xfe"}', "application/json"),
    ("NUL in prompt", b'{"prompt": "a\\u0000b"}', "application/json"),
    ("wrong type", b'{"prompt": "hi", "max_tokens": "ten"}', "application/json"),
    ("unknown field", b'{"prompt": "hi", "bogus": 1}', "application/json"),
    ("huge max_tokens", b'{"prompt": "hi", "max_tokens": 100000000000}', "application/json"),
    ("top_p out of range", b'{"prompt": "hi", "top_p": 7}', "application/json"),
    ("unknown role", b'{"messages": [{"role": "wizard", "content": "hi"}]}', "application/json"),
    ("unknown model", b'{"prompt": "hi", "model": "evil/model"}', "application/json"),
    ("too large", b'{"prompt": "' + b"x" * 70_000 + b'"}', "application/json"),
    ("too long for the context", b'{"prompt": "' + b"hello " * 3000 + b'"}', "application/json"),
    ("wrong content type", b"prompt=hi", "application/x-www-form-urlencoded"),
    ("deeply nested", b'{"stop": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
]


@dataclass
class Record:
    kind: str
    status: int  # 0: no HTTP answer (connection error or client timeout)
    seconds: float
    error: str = ""


class Soak:
    def __init__(self, url: str, seconds: float, seed: int) -> None:
        self.url, self.seconds = url, seconds
        self.rng = random.Random(seed)
        self.records: list[Record] = []
        self.deadline = 0.0

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def timed(self, kind: str, call) -> None:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        try:
            status, error = await call()
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
        self.records.append(Record(kind, status, time.monotonic() - started, error))

    async def stream(self, client: httpx.AsyncClient) -> tuple[int, str]:
        chat = self.rng.random() < 0.5
        prompt = self.rng.choice(PROMPTS)
        body: dict[str, object] = {"max_tokens": self.rng.randint(8, 64), "temperature": 0.8}
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        async with client.stream(
            "POST", self.url + ("/api/chat/stream" if chat else "/api/generate/stream"), json=body
        ) as response:
            text = (await response.aread()).decode()
        if response.status_code == 200 and not text.rstrip().endswith("data: [DONE]"):
            return response.status_code, "stream without its [DONE] terminator"
        if response.status_code == 200 and '"type":"error"' in text:
            return response.status_code, "stream ended with an error event"
        return response.status_code, ""

    async def abandon(self, client: httpx.AsyncClient) -> tuple[int, str]:
        body = {"prompt": self.rng.choice(PROMPTS), "max_tokens": 400, "ignore_eos": True}
        async with client.stream("POST", self.url + "/api/generate/stream", json=body) as response:
            if response.status_code == 200:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and '"delta"' in line:
                        break  # leave mid-stream: the connection is dropped
            return response.status_code, ""

    async def bad_input(self, client: httpx.AsyncClient) -> tuple[int, str]:
        name, content, content_type = self.rng.choice(BAD_INPUTS)
        path = "/api/chat" if b"messages" in content else "/api/generate"
        response = await client.post(self.url + path, content=content, headers={"content-type": content_type})
        wrong = not 400 <= response.status_code < 500 or "error" not in response.json()
        return response.status_code, f"{name}: {response.status_code}" if wrong else ""

    async def complete(self, client: httpx.AsyncClient) -> tuple[int, str]:
        body = {"prompt": self.rng.choice(PROMPTS), "max_tokens": 16}
        response = await client.post(self.url + "/api/generate", json=body)
        if response.status_code in (429, 503) and "retry-after" not in response.headers:
            return response.status_code, "refusal without Retry-After"
        return response.status_code, ""

    async def liveness(self, client: httpx.AsyncClient) -> tuple[int, str]:
        response = await client.get(self.url + "/health/live")
        return response.status_code, ""

    async def loop(self, kind: str, call, pause: float) -> None:  # type: ignore[no-untyped-def]
        limits = httpx.Limits(max_keepalive_connections=0 if kind == "abandoned stream" else 10)
        async with httpx.AsyncClient(timeout=180, limits=limits) as client:
            while self.running():
                await self.timed(kind, lambda: call(client))
                await asyncio.sleep(pause)

    async def bursts(self) -> None:
        limits = httpx.Limits(max_connections=4 * CAPACITY)
        async with httpx.AsyncClient(timeout=180, limits=limits) as client:
            while self.running():
                await asyncio.sleep(BURST_EVERY_SECONDS)
                await asyncio.gather(*(self.timed("burst", lambda: self.complete(client)) for _ in range(3 * CAPACITY)))

    async def run(self) -> None:
        self.deadline = time.monotonic() + self.seconds
        await asyncio.gather(
            self.loop("stream", self.stream, 0),
            self.loop("stream", self.stream, 0),
            self.loop("abandoned stream", self.abandon, 0.2),
            self.loop("bad input", self.bad_input, 0.05),
            self.loop("liveness", self.liveness, 0.5),
            self.bursts(),
        )


def rss_mib(pid: int) -> float:
    main = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)]) / 2**20


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summarize(records: list[Record]) -> dict[str, object]:
    kinds = sorted({r.kind for r in records})
    by_kind = {}
    for kind in kinds:
        mine = [r for r in records if r.kind == kind]
        seconds = [r.seconds for r in mine if r.status]
        by_kind[kind] = {
            "requests": len(mine),
            "by_status": dict(sorted(Counter(str(r.status) for r in mine).items())),
            "p50_seconds": round(percentile(seconds, 50), 3),
            "p99_seconds": round(percentile(seconds, 99), 3),
            "max_seconds": round(max(seconds, default=0.0), 3),
        }
    return {
        "requests": len(records),
        "by_status": dict(sorted(Counter(str(r.status) for r in records).items())),
        "server_errors_5xx": sum(1 for r in records if r.status >= 500),
        "no_answer": sum(1 for r in records if r.status == 0),
        "wrong_answers": sorted(Counter(r.error for r in records if r.error and r.status).items()),
        "p99_seconds_all": round(percentile([r.seconds for r in records if r.status], 99), 3),
        "by_kind": by_kind,
    }


def print_table(summary: dict, figures: dict[str, float], seconds: float) -> None:  # type: ignore[type-arg]
    statuses = sorted({s for k in summary["by_kind"].values() for s in k["by_status"]}, key=int)
    print(f"\nsoak: {seconds:.0f}s against one process ({RUNNING} running + {QUEUED} queued)\n")
    print(f"{'kind':<18}{'requests':>9}" + "".join(f"{s:>7}" for s in statuses) + f"{'p50 s':>9}{'p99 s':>9}")
    for kind, row in summary["by_kind"].items():
        cells = "".join(f"{row['by_status'].get(s, 0):>7}" for s in statuses)
        print(f"{kind:<18}{row['requests']:>9}{cells}{row['p50_seconds']:>9.3f}{row['p99_seconds']:>9.3f}")
    print(f"\nrequests {summary['requests']}  by status {summary['by_status']}")
    print(
        f"5xx {summary['server_errors_5xx']}  no answer {summary['no_answer']}  "
        f"wrong answers {summary['wrong_answers'] or 'none'}"
    )
    print(f"p99 latency (all answered requests) {summary['p99_seconds_all']:.3f}s")
    print(
        f"server RSS: start {figures['start_mib']:.0f} MiB, end {figures['end_mib']:.0f} MiB, "
        f"max {figures['max_mib']:.0f} MiB"
    )
    print(f"engine idle {figures['engine_idle_after_seconds']}s after the last client")


async def sample_rss(pid: int, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(rss_mib(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)


async def soak(server: RunningServer, seconds: float, seed: int) -> tuple[list[Record], dict[str, float]]:
    run = Soak(server.url, seconds, seed)
    start = rss_mib(server.process.pid)
    samples: list[float] = [start]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(server.process.pid, samples, stop))
    await run.run()
    stop.set()
    await sampler
    idle_after = await seconds_to_idle(server.url)
    end = rss_mib(server.process.pid)
    figures = {
        "start_mib": round(start, 1),
        "end_mib": round(end, 1),
        "max_mib": round(max(samples), 1),
        "engine_idle_after_seconds": idle_after,
    }
    return run.records, figures


async def seconds_to_idle(url: str, timeout: float = 120) -> float:
    """How long after the last client the engine holds no request: abandoned streams must not linger."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() - started < timeout:
            text = (await client.get(url + "/metrics")).text
            gauges = re.findall(r"^llm_num_requests_(?:running|waiting)\{[^}]*\} (\S+)$", text, flags=re.M)
            busy = sum(float(value) for value in gauges)
            if busy == 0:
                return round(time.monotonic() - started, 2)
            await asyncio.sleep(0.1)
    return float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300, help=f"run length (at most {MAX_SECONDS})")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    seconds = min(args.seconds, MAX_SECONDS)
    spec = ServerSpec(
        "llm-inference-soak",
        [sys.executable, "-m", "llm_inference", "serve"],
        "/health/ready",
        {**SERVER_ENV, "LLM_INFERENCE_PORT": "{port}"},
    )
    server = RunningServer(spec, free_port(), RESULTS)  # its log: bench/results/llm-inference-soak.log
    try:
        server.wait_ready()
        records, figures = asyncio.run(soak(server, seconds, args.seed))
    finally:
        server.stop()
    summary = summarize(records)
    print_table(summary, figures, seconds)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"soak-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "when": stamp,
                "seconds": seconds,
                "seed": args.seed,
                "server_env": SERVER_ENV,
                "server": figures,
                **summary,
                "no_answer_errors": sorted({r.error for r in records if r.status == 0})[:20],
            },
            indent=2,
        )
    )
    print(f"\nwrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    clean = summary["server_errors_5xx"] == 0 and summary["no_answer"] == 0 and not summary["wrong_answers"]
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
