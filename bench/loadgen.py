"""A streaming load client for LLM servers: N concurrent clients, per-request TTFT and inter-token latency.

Speaks three dialects over SSE: this service's /api/generate/stream, and the OpenAI-style /v1/completions and
/v1/chat/completions that llama-server, llama-cpp-python's server and vLLM's server share. Only ever sends to
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import statistics
import time
from dataclasses import dataclass, field

import httpx

WORDS = [
    "river",
    "mountain",
    "cloud",
    "window",
    "garden",
    "silver",
    "music",
    "paper",
    "engine",
    "candle",
    "forest",
    "harbor",
    "planet",
    "lantern",
    "market",
    "winter",
    "bridge",
    "thunder",
    "valley",
    "meadow",
    "ocean",
    "signal",
    "castle",
    "pocket",
    "shadow",
    "circle",
    "orange",
    "yellow",
    "teacher",
    "doctor",
    "farmer",
    "baker",
    "pilot",
    "sailor",
    "writer",
    "painter",
    "dancer",
    "singer",
    "hunter",
    "driver",
]


def make_prompts(count: int, words: int, seed: int) -> list[str]:
    """Distinct prompts (no shared prefix beyond a few words), so prefix caches cannot help any server."""
    rng = random.Random(seed)
    return [
        f"Story {i}: " + " ".join(rng.choice(WORDS) for _ in range(words)) + ". Continue the story:"
        for i in range(count)
    ]


@dataclass
class Dialect:
    path: str
    eos_token_ids: tuple[int, ...] = ()  # for servers without ignore_eos: ban EOS through logit_bias
    ignore_eos: bool = True  # off: a request ends where the model (or a constraint) ends it; count its usage
    extra: dict[str, object] = field(default_factory=dict)  # more fields of every request's body

    @property
    def chat(self) -> bool:
        return self.path.endswith("/chat/completions")

    def body(self, prompt: str, max_tokens: int) -> dict[str, object]:
        if self.path == "/api/generate/stream":
            return {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
        body: dict[str, object] = {"max_tokens": max_tokens, "temperature": 0, "stream": True}
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.ignore_eos:
            body["ignore_eos"] = True
        if self.eos_token_ids:
            body["logit_bias"] = {str(t): -100.0 for t in self.eos_token_ids}
        return {**body, **self.extra}

    def text_of(self, event: dict[str, object]) -> str:
        if self.path == "/api/generate/stream":
            return str(event.get("text", "")) if event.get("type") == "delta" else ""
        choices = event.get("choices") or [{}]
        if self.chat:
            return str((choices[0].get("delta") or {}).get("content") or "")  # type: ignore[index, union-attr]
        return str(choices[0].get("text") or "")  # type: ignore[index, union-attr]


OURS = Dialect("/api/generate/stream")
OPENAI = Dialect("/v1/completions")


@dataclass
class RequestResult:
    ok: bool
    time_to_first_token: float = 0.0
    inter_token_latencies: list[float] = field(default_factory=list)
    output_chunks: int = 0
    latency: float = 0.0
    error: str = ""
    text: str = ""
    completion_tokens: int = 0  # from the stream's usage (OpenAI's stream_options.include_usage), 0 if none
    finish_reason: str = ""


async def one_request(
    client: httpx.AsyncClient, url: str, dialect: Dialect, prompt: str, max_tokens: int
) -> RequestResult:
    started = time.perf_counter()
    arrivals: list[float] = []
    pieces: list[str] = []
    completion_tokens, finish_reason = 0, ""
    try:
        async with client.stream("POST", url + dialect.path, json=dialect.body(prompt, max_tokens)) as response:
            if response.status_code != 200:
                return RequestResult(ok=False, error=f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if text := dialect.text_of(event):
                    arrivals.append(time.perf_counter())
                    pieces.append(text)
                if isinstance(usage := event.get("usage"), dict):
                    completion_tokens = int(usage.get("completion_tokens") or 0)
                for choice in event.get("choices") or ():
                    finish_reason = choice.get("finish_reason") or finish_reason
    except httpx.HTTPError as exc:
        return RequestResult(ok=False, error=f"{type(exc).__name__}: {exc}")
    if not arrivals:
        return RequestResult(ok=False, error="no tokens")
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return RequestResult(
        True,
        arrivals[0] - started,
        gaps,
        len(arrivals),
        time.perf_counter() - started,
        text="".join(pieces),
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
    )


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank, no interpolation)."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def run_requests(
    url: str, dialect: Dialect, prompts: list[str], concurrency: int, max_tokens: int
) -> tuple[list[RequestResult], float]:
    """Send every prompt, `concurrency` at a time (closed loop: a client sends its next as its last ends);
    returns each request's result and the wall time of the whole."""
    queue = list(prompts)
    results: list[RequestResult] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:

        async def worker() -> None:
            while queue:
                results.append(await one_request(client, url, dialect, queue.pop(), max_tokens))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results, time.perf_counter() - started


async def run_level(
    url: str, dialect: Dialect, prompts: list[str], concurrency: int, max_tokens: int
) -> dict[str, float]:
    """Send every prompt, `concurrency` at a time; aggregate throughput counts max_tokens per request
    (EOS is ignored, and each server's chunk count is checked against it)."""
    results, wall = await run_requests(url, dialect, prompts, concurrency, max_tokens)
    good = [r for r in results if r.ok]
    ttfts = sorted(r.time_to_first_token for r in good)
    gaps = sorted(g for r in good for g in r.inter_token_latencies)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "failed": len(results) - len(good),
        "errors": sorted({r.error for r in results if not r.ok})[:3],  # type: ignore[dict-item]
        "output_tokens_per_second": len(good) * max_tokens / wall,
        "chunks_per_request": statistics.mean(r.output_chunks for r in good) if good else 0,
        "ttft_p50_ms": percentile(ttfts, 0.5) * 1000,
        "ttft_p99_ms": percentile(ttfts, 0.99) * 1000,
        "itl_p50_ms": percentile(gaps, 0.5) * 1000,
        "itl_p99_ms": percentile(gaps, 0.99) * 1000,
        "wall_seconds": wall,
    }
