"""What observability costs a request: the inference observer per request and per token, and the HTTP
wrapper per request, each beside the same work unobserved, with tracing off (no OTLP endpoint) and on.

No model runs: a synthetic chunk stream and a trivial ASGI app isolate the telemetry code's own cost (a real
generation step takes milliseconds; these are microseconds). Spans go to an exporter that drops them, so
the figures are the service's side of tracing, not a collector's.

    .venv/bin/python -m bench.telemetry_overhead [--requests 2000] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from llm_inference.engines.base import Chunk, EngineInfo, FinishReason, GenerationRequest, SamplingParams
from llm_inference.service import Prepared
from llm_inference.telemetry.http import observe_http
from llm_inference.telemetry.inference import InferenceObserver
from llm_inference.telemetry.metrics import Metrics

RESULTS = Path(__file__).parent / "results"


class _DroppingExporter(SpanExporter):
    def export(self, spans: Sequence[object]) -> SpanExportResult:  # type: ignore[override]
        return SpanExportResult.SUCCESS


@dataclass
class _InfoOnly:
    """Stands in for an engine where the observer only asks which backend it is."""

    def info(self) -> EngineInfo:
        return EngineInfo(backend="llamacpp", model_format="gguf", context_length=2048)


def _tracer(on: bool):  # type: ignore[no-untyped-def]
    if not on:
        return None
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DroppingExporter()))
    return provider.get_tracer("bench")


async def _chunks(tokens: int) -> AsyncIterator[Chunk]:
    for n in range(1, tokens + 1):
        yield Chunk("tok", 16, n, FinishReason.LENGTH if n == tokens else None)


async def _inference(requests: int, tokens: int, observer: InferenceObserver | None) -> float:
    """Seconds per request to pass `tokens` chunks through (observed or not)."""
    prepared = Prepared(
        model="m",
        engine=_InfoOnly(),
        operation="text_completion",  # type: ignore[arg-type]
        request=GenerationRequest(
            "id",
            "prompt",
            SamplingParams(max_tokens=tokens, temperature=0.7, top_p=0.9),
            prompt_token_ids=tuple(range(16)),
        ),
    )
    started = time.perf_counter()
    for _ in range(requests):
        chunks = _chunks(tokens)
        stream = chunks if observer is None else observer.watch(prepared, chunks)
        async for _ in stream:
            pass
    return (time.perf_counter() - started) / requests


async def _http(requests: int, wrap: bool, tracer) -> float:  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    handler = observe_http(app, Metrics(), tracer) if wrap else app
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/generate",
        "path_template": "/api/generate",
        "headers": [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
        "http_version": "1.1",
    }

    async def receive():  # type: ignore[no-untyped-def]
        return {"type": "http.request", "body": b""}

    async def send(message):  # type: ignore[no-untyped-def]
        pass

    started = time.perf_counter()
    for _ in range(requests):
        await handler(dict(scope), receive, send)
    return (time.perf_counter() - started) / requests


async def main(requests: int, tokens: int) -> None:
    import logging

    logging.getLogger("llm_inference.access").disabled = True  # measure the code, not stderr
    base = await _inference(requests, tokens, None)
    rows = [("inference stream, unobserved", base, 0.0)]
    for label, on in (("observed, tracing off", False), ("observed, tracing on", True)):
        observer = InferenceObserver(Metrics(), _tracer(on), trace_content=False, timeout_seconds=300)
        seconds = await _inference(requests, tokens, observer)
        rows.append((f"inference stream, {label}", seconds, seconds - base))
    http_base = await _http(requests, False, None)
    rows.append(("HTTP request, unwrapped", http_base, 0.0))
    for label, on in (("tracing off", False), ("tracing on", True)):
        seconds = await _http(requests, True, _tracer(on))
        rows.append((f"HTTP request, observed, {label}", seconds, seconds - http_base))

    print(f"\n{requests} requests, {tokens} tokens each (Python {platform.python_version()})\n")
    print(f"{'':44} {'µs/request':>12} {'added µs/request':>18} {'added µs/token':>16}")
    for label, seconds, added in rows:
        per_token = f"{added / tokens * 1e6:16.2f}" if label.startswith("inference") else f"{'':>16}"
        print(f"{label:44} {seconds * 1e6:12.1f} {added * 1e6:18.1f} {per_token}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "telemetry_overhead.json"
    out.write_text(
        json.dumps(
            {
                "requests": requests,
                "tokens_per_request": tokens,
                "python": platform.python_version(),
                "rows": [
                    {
                        "case": label,
                        "microseconds_per_request": round(s * 1e6, 2),
                        "added_microseconds_per_request": round(a * 1e6, 2),
                    }
                    for label, s, a in rows
                ],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.tokens))
