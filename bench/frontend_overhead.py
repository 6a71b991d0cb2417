"""What the service's own front end costs per streamed token: the whole Litestar app (validation, admission,
the inference observer, the SSE writer, the HTTP metrics wrapper, the outer ASGI wrappers of asgi.py) around an
engine that does no work.

A fake engine is the point here: it yields one-token chunks as fast as the event loop turns, so the CPU time
the process spends per token is the front end's own, the part that limits a small model on a fast GPU
(bench/gpu/README.md). Streams run concurrently through the ASGI interface in-process (no sockets, no Granian),
with a driver that only counts bytes. Each round streams the same chat through both surfaces, /api/chat/stream
(our SSE events) and /v1/chat/completions (OpenAI's chunks), interleaved, so the two are compared in one run.
Compare two versions of the code by running it against each checkout:

    .venv/bin/python -m bench.frontend_overhead [--streams 64] [--tokens 128] [--rounds 5] [--out results.json]
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
from llm_inference.api.http.drain import GracefulDrain
from llm_inference.api.http.unread_body import CloseAfterUnreadBody
from llm_inference.app import create_app
from llm_inference.engines.base import ChatMessage, Chunk, EngineInfo, EngineStats, FinishReason, GenerationRequest
from llm_inference.settings import load_settings

RESULTS = Path(__file__).parent / "results"


class IdleEngine:
    """Yields max_tokens one-token chunks, giving the event loop a turn between them as a real step would."""

    def __init__(self) -> None:
        self.running = 0
        self.decode_steps = 0

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        prompt = len(request.prompt_token_ids or ())
        n = request.sampling.max_tokens
        self.running += 1
        try:
            for i in range(1, n + 1):
                await asyncio.sleep(0)
                self.decode_steps += 1
                yield Chunk(" tok", prompt, i, FinishReason.LENGTH if i == n else None)
        finally:
            self.running -= 1

    async def check_health(self) -> None:
        pass

    async def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def vocab_size(self) -> int:
        return 1000

    async def render_chat(self, messages: Sequence[ChatMessage], tools: object = None) -> str:
        return "\n".join(m.content for m in messages)

    def info(self) -> EngineInfo:
        return EngineInfo(backend="idle", model_format="none", context_length=4096, quantization=None, extra={})

    def stats(self) -> EngineStats:
        return EngineStats(running=self.running, waiting=0)

    async def aclose(self) -> None:
        pass


async def _idle_engine(*_: Any, **__: Any) -> IdleEngine:
    return IdleEngine()


MESSAGES = [{"role": "user", "content": "a b c d e f g h"}]
SURFACES = {
    "/api/chat/stream": lambda tokens: {"messages": MESSAGES, "max_tokens": tokens, "temperature": 0},
    "/v1/chat/completions": lambda tokens: {
        "model": "smollm2-135m-instruct",
        "messages": MESSAGES,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    },
}


async def _stream(app: Any, path: str, body: bytes) -> int:
    """One streamed POST through the ASGI interface; returns the bytes of its body."""
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
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8091),
    }
    await app(scope, receive, send)
    return received


async def _round(app: Any, path: str, streams: int, tokens: int) -> dict[str, float]:
    body = json.dumps(SURFACES[path](tokens)).encode()
    cpu, wall = time.process_time(), time.perf_counter()
    sizes = await asyncio.gather(*(_stream(app, path, body) for _ in range(streams)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(size > tokens * 10 for size in sizes), sizes  # every token reached the client as a frame
    return {"cpu_us_per_token": cpu / (streams * tokens) * 1e6, "tokens_per_second": streams * tokens / wall}


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    settings, _ = load_settings(
        {"LLM_MAX_CONCURRENT_REQUESTS": str(args.streams), "LLM_LOG_LEVEL": "WARNING", "LLM_MAX_QUEUED_REQUESTS": "0"}
    )
    with (
        mock.patch("llm_inference.models.registry.load_engine", _idle_engine),
        mock.patch("llm_inference.models.registry.fetch", lambda spec, *_: (Path("/dev/null"), None)),
    ):
        litestar_app = create_app(settings)
        # The ASGI stack Granian serves (llm_inference/asgi.py): its outer wrappers see every frame too.
        app = CloseAfterUnreadBody(GracefulDrain(litestar_app, litestar_app.state.service, 1.0))
        async with litestar_app.lifespan():
            while not (await litestar_app.state.service.readiness())[0]:
                await asyncio.sleep(0.01)
            rounds: dict[str, list[dict[str, float]]] = {path: [] for path in SURFACES}
            for path in SURFACES:
                await _round(app, path, args.streams, 16)  # warm-up
            for _ in range(args.rounds):
                for path in SURFACES:  # interleaved: a drift of the machine hits both surfaces alike
                    rounds[path].append(await _round(app, path, args.streams, args.tokens))
    surfaces = {
        path: {
            "rounds": per_round,
            "median_cpu_us_per_token": statistics.median(r["cpu_us_per_token"] for r in per_round),
            "median_tokens_per_second": statistics.median(r["tokens_per_second"] for r in per_round),
        }
        for path, per_round in rounds.items()
    }
    native, openai = (surfaces[path]["median_cpu_us_per_token"] for path in SURFACES)
    return {
        "code": str(Path(llm_inference.__file__).parent),
        "python": platform.python_version(),
        "streams": args.streams,
        "tokens": args.tokens,
        "surfaces": surfaces,
        "v1_over_api_cpu_per_token": round(openai / native, 3),
    }


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # the bench extra

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(6, 3.5))
    names = list(report["surfaces"])
    values = [report["surfaces"][name]["median_cpu_us_per_token"] for name in names]
    axis.bar(names, values, color=["C0", "C1"])
    axis.set_ylabel("CPU µs per streamed token (median)")
    axis.set_title(f"Front-end cost, {report['streams']} streams × {report['tokens']} tokens, idle engine")
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the JSON here (default: print only)")
    args = parser.parse_args()
    report = asyncio.run(_main(args))
    print(f"code: {report['code']}; {args.streams} streams x {args.tokens} tokens, {args.rounds} rounds")
    print("| surface | CPU µs per streamed token (median) | tokens/s through one event loop |")
    print("|---|---|---|")
    for path, figures in report["surfaces"].items():
        print(f"| {path} | {figures['median_cpu_us_per_token']:.1f} | {figures['median_tokens_per_second']:,.0f} |")
    print(f"/v1 over /api, CPU per token: {report['v1_over_api_cpu_per_token']:.2f}x (target <= 1.1x)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        _plot(report, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
