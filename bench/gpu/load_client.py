"""Streaming load client for one concurrency level, spread over several processes so it never limits the server.

Speaks both APIs compared in bench/gpu: this service's `/api/generate/stream` (SSE events delta/done) and
vLLM's OpenAI `/v1/completions` with `stream: true`. Every request streams; per request it records the time
to the first text, the gaps between text chunks (inter-token latency) and the output token count the server
reports (our done event's usage, vLLM's final usage chunk).

    python bench/gpu/load_client.py --api ours|openai --url URL --prompts prompts.json --concurrency 64 \
        --max-tokens 128 [--processes 8] [--model NAME]
prints one JSON object: the level's summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from typing import Any

import aiohttp
import numpy as np


def _body(api: str, prompt: str, max_tokens: int, model: str | None) -> tuple[str, dict[str, Any]]:
    # ignore_eos: every request generates exactly max_tokens, so both servers do the same work.
    if api == "ours":
        return "/api/generate/stream", {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,
        }
    return "/v1/completions", {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _parse(api: str, event: dict[str, Any]) -> tuple[str, int | None, str | None]:
    """(text, output tokens if this event reports them, error)."""
    if api == "ours":
        kind = event["type"]
        if kind == "delta":
            return event["text"], None, None
        if kind == "done":
            return "", event["usage"]["completion_tokens"], None
        return "", None, json.dumps(event["error"])
    text = event["choices"][0]["text"] if event.get("choices") else ""
    usage = event.get("usage")
    return text, usage["completion_tokens"] if usage else None, None


async def _one(
    session: aiohttp.ClientSession, api: str, url: str, prompt: str, max_tokens: int, model: str | None
) -> dict[str, Any]:
    path, body = _body(api, prompt, max_tokens, model)
    started = time.perf_counter()
    chunk_times: list[float] = []
    tokens, error = 0, None
    async with session.post(url + path, json=body) as response:
        if response.status != 200:
            return {"error": f"HTTP {response.status}: {(await response.text())[:200]}"}
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            text, reported, error = _parse(api, json.loads(line[6:]))
            if text:
                chunk_times.append(time.perf_counter())
            if reported is not None:
                tokens = reported
    ended = time.perf_counter()
    if error or not chunk_times:
        return {"error": error or "no text streamed"}
    return {
        "start": started,
        "end": ended,
        "tokens": tokens,
        "ttft": chunk_times[0] - started,
        "itl": np.diff(chunk_times).tolist(),
        "tail": ended - chunk_times[-1],
    }


async def _worker_process_main(
    api: str, url: str, prompts: list[str], concurrency: int, max_tokens: int, model: str | None, start_at: float
) -> list[dict[str, Any]]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    results: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.sleep(max(0.0, start_at - time.time()))  # all processes start together

        async def user() -> None:
            while not queue.empty():
                prompt = queue.get_nowait()
                try:
                    results.append(await _one(session, api, url, prompt, max_tokens, model))
                except Exception as exc:  # a failed request is counted, not fatal
                    results.append({"error": f"{type(exc).__name__}: {exc}"})

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return results


def _process(args: tuple[Any, ...]) -> list[dict[str, Any]]:
    return asyncio.run(_worker_process_main(*args))


def _pin(cpus: frozenset[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)


class ClientPool:
    """The client's processes, started once and kept for every pass (a new pool per pass cost ~1.5 s of start-up
    and a 2 s synchronized start), pinned to `cpus` when given: cores the servers do not use, so the client and
    the server under test never compete for one."""

    START_DELAY_S = 0.3  # the processes are up: a job reaches each of them in milliseconds

    def __init__(self, processes: int, cpus: frozenset[int] | None = None) -> None:
        self.processes = processes
        self._pool = multiprocessing.get_context("spawn").Pool(processes, initializer=_pin, initargs=(cpus,))

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.terminate()
        self._pool.join()

    def run(
        self, api: str, url: str, prompts: list[str], concurrency: int, max_tokens: int, model: str | None = None
    ) -> list[dict[str, Any]]:
        """Every prompt once, `concurrency` streams at a time; the per-request records."""
        processes = max(1, min(self.processes, concurrency))
        shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
        prompt_shares: list[list[str]] = [[] for _ in shares]
        for i, prompt in enumerate(prompts):  # prompts dealt out in proportion to each process's concurrency
            prompt_shares[i % processes].append(prompt)
        start_at = time.time() + self.START_DELAY_S
        jobs = [(api, url, prompt_shares[i], shares[i], max_tokens, model, start_at) for i in range(processes)]
        return [r for part in self._pool.map(_process, jobs, chunksize=1) for r in part]


def run_requests(
    api: str,
    url: str,
    prompts: list[str],
    concurrency: int,
    max_tokens: int,
    processes: int,
    model: str | None = None,
    cpus: frozenset[int] | None = None,
) -> list[dict[str, Any]]:
    """Every prompt once, `concurrency` streams at a time, from a pool of its own; the per-request records."""
    with ClientPool(max(1, min(processes, concurrency)), cpus) as pool:
        return pool.run(api, url, prompts, concurrency, max_tokens, model)


def run_level(
    api: str, url: str, prompts: list[str], concurrency: int, max_tokens: int, processes: int, model: str | None = None
) -> dict[str, Any]:
    return summarize([run_requests(api, url, prompts, concurrency, max_tokens, processes, model)], concurrency)


def _ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 3) if values else None


def _mean_ms(values: list[float]) -> float | None:
    return round(float(np.mean(values)) * 1000, 3) if values else None


def summarize(runs: list[list[dict[str, Any]]], concurrency: int) -> dict[str, Any]:
    """One summary over one or more runs of a level: tok/s is all their tokens over all their wall time."""
    results = [r for run in runs for r in run]
    ok = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    if not ok:
        return {
            "concurrency": concurrency,
            "requests": len(results),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
        }
    duration = sum(
        max(r["end"] for r in run if "error" not in r) - min(r["start"] for r in run if "error" not in r)
        for run in runs
    )
    tokens = sum(r["tokens"] for r in ok)
    ttft = [r["ttft"] for r in ok]
    itl = [gap for r in ok for gap in r["itl"]]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "duration_s": round(duration, 3),
        "output_tokens": tokens,
        "mean_output_tokens": round(tokens / len(ok), 2),
        "output_tokens_per_s": round(tokens / duration, 1),
        "runs_output_tokens_per_s": [
            round(
                sum(r["tokens"] for r in run if "error" not in r)
                / (max(r["end"] for r in run if "error" not in r) - min(r["start"] for r in run if "error" not in r)),
                1,
            )
            for run in runs
        ],
        "ttft_p50_ms": _ms(ttft, 50),
        "ttft_p99_ms": _ms(ttft, 99),
        "itl_p50_ms": _ms(itl, 50),
        "itl_p99_ms": _ms(itl, 99),
        # where a request's time goes, on average: to the first text, between texts, after the last text
        "ttft_mean_ms": _mean_ms(ttft),
        "itl_mean_ms": _mean_ms(itl),
        "tail_mean_ms": _mean_ms([r["tail"] for r in ok]),
        "latency_mean_ms": _mean_ms([r["end"] - r["start"] for r in ok]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", choices=["ours", "openai"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prompts", required=True, help="JSON list of prompt strings")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--model", default=None, help="model name for the OpenAI API")
    args = parser.parse_args()
    with open(args.prompts) as handle:
        prompts = json.load(handle)
    print(
        json.dumps(
            run_level(args.api, args.url, prompts, args.concurrency, args.max_tokens, args.processes, args.model)
        )
    )


if __name__ == "__main__":
    main()
