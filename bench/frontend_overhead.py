"""What the service's own front end costs per streamed token: the whole Litestar app (validation, admission,
the inference observer, the SSE writer, the HTTP metrics wrapper) around an engine that does no work.

A fake engine is the point here: it yields one-token chunks as fast as the event loop turns, so the CPU time
the process spends per token is the front end's own, the part that limits a small model on a fast GPU
(bench/gpu/README.md). Streams run concurrently through the ASGI interface in-process (no sockets, no Granian),
with a driver that only counts bytes. Compare two versions of the code by running it against each checkout:

    .venv/bin/python -m bench.frontend_overhead [--streams 64] [--tokens 128] [--rounds 5]
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python -m bench.frontend_overhead
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import llm_inference
from llm_inference.app import create_app
from llm_inference.engines.base import ChatMessage, Chunk, EngineInfo, EngineStats, FinishReason, GenerationRequest
from llm_inference.settings import load_settings

RESULTS = Path(__file__).parent / "results"


class IdleEngine:
    """Yields max_tokens one-token chunks, giving the event loop a turn between them as a real step would."""

    def __init__(self) -> None:
        self.running = 0

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        prompt = len(request.prompt_token_ids or ())
        n = request.sampling.max_tokens
        self.running += 1
        try:
            for i in range(1, n + 1):
                await asyncio.sleep(0)
                yield Chunk(" tok", prompt, i, FinishReason.LENGTH if i == n else None)
        finally:
            self.running -= 1

    async def abort(self, request_id: str) -> None:
        pass

    async def check_health(self) -> None:
        pass

    async def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    async def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return "\n".join(m.content for m in messages)

    def info(self) -> EngineInfo:
        return EngineInfo(backend="idle", model_format="none", context_length=4096, quantization=None, extra={})

    def stats(self) -> EngineStats:
        return EngineStats(running=self.running, waiting=0)

    async def aclose(self) -> None:
        pass


async def _idle_engine(*_: Any, **__: Any) -> IdleEngine:
    return IdleEngine()


async def _stream(app: Any, body: bytes) -> int:
    """One POST /api/generate/stream through the ASGI interface; returns the bytes of its body."""
    received = 0
    finished = asyncio.Event()
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal received
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message
        elif message["type"] == "http.response.body":
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/generate/stream", "raw_path": b"/api/generate/stream", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8091),
    }
    await app(scope, receive, send)
    return received


async def _round(app: Any, streams: int, tokens: int) -> dict[str, float]:
    body = json.dumps({"prompt": "a b c d e f g h", "max_tokens": tokens, "temperature": 0}).encode()
    cpu, wall = time.process_time(), time.perf_counter()
    sizes = await asyncio.gather(*(_stream(app, body) for _ in range(streams)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(size > tokens * 10 for size in sizes), sizes  # every token reached the client as a frame
    return {"cpu_us_per_token": cpu / (streams * tokens) * 1e6, "tokens_per_second": streams * tokens / wall}


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    settings, _ = load_settings({"LLM_MAX_CONCURRENT_REQUESTS": str(args.streams), "LLM_LOG_LEVEL": "WARNING",
                                 "LLM_MAX_QUEUED_REQUESTS": "0"})
    with mock.patch("llm_inference.models.registry.load_engine", _idle_engine), \
            mock.patch("llm_inference.models.registry.fetch", lambda spec: (Path("/dev/null"), None)):
        app = create_app(settings)
        async with app.lifespan():
            while not (await app.state.service.readiness())[0]:
                await asyncio.sleep(0.01)
            await _round(app, args.streams, 16)  # warm-up
            rounds = [await _round(app, args.streams, args.tokens) for _ in range(args.rounds)]
    return {
        "code": str(Path(llm_inference.__file__).parent),
        "python": platform.python_version(),
        "streams": args.streams,
        "tokens": args.tokens,
        "rounds": rounds,
        "median_cpu_us_per_token": statistics.median(r["cpu_us_per_token"] for r in rounds),
        "median_tokens_per_second": statistics.median(r["tokens_per_second"] for r in rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the JSON here (default: print only)")
    args = parser.parse_args()
    report = asyncio.run(_main(args))
    print(f"{report['code']}: {report['median_cpu_us_per_token']:.1f} µs CPU per streamed token, "
          f"{report['median_tokens_per_second']:,.0f} tokens/s through one event loop ({args.streams} streams)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
