"""Does a greedy (temperature 0) output change when other sequences share its batches?

For this service and for llama-server (same llama.cpp), N times: generate a short prompt alone, then the same
prompt while a long generation runs beside it, and count how often the two texts differ. This is the evidence
behind the batching test's reasoning: llama.cpp's CPU kernels are not batch-invariant (a matrix product over
a batch of several rows may sum in another order than over one row), so a near-tie between two tokens can
flip. Only 127.0.0.1 is contacted.

    .venv/bin/python -m bench.cpu.batch_invariance --llama-server .cache/bench/llama-server-0.3.36/bin/llama-server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

from bench.servers import RunningServer, ServerSpec, free_port
from llm_inference.model_spec import embedded_model_path

SHORT = "The capital of France is"
LONG = "Count to one thousand: 1, 2, 3,"


async def generate(client: httpx.AsyncClient, url: str, ours: bool, prompt: str, max_tokens: int) -> str:
    if ours:
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
        return (await client.post(url + "/api/generate", json=body)).json()["text"]
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "cache_prompt": True}
    return (await client.post(url + "/v1/completions", json=body)).json()["choices"][0]["text"]


async def trials(url: str, ours: bool, count: int) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=600) as client:
        alone = await generate(client, url, ours, SHORT, 40)
        differing = 0
        for _ in range(count):
            beside, _ = await asyncio.gather(
                generate(client, url, ours, SHORT, 40), generate(client, url, ours, LONG, 120)
            )
            differing += beside != alone
    return {"trials": count, "differing_from_alone": differing, "alone": alone}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", required=True)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    threads, slots, ctx = str(os.cpu_count()), "8", "1024"
    specs = [
        (
            ServerSpec(
                "llm-inference",
                [sys.executable, "-m", "llm_inference", "serve"],
                "/health/ready",
                {
                    "LLM_INFERENCE_HOSTNAME": "127.0.0.1",
                    "LLM_INFERENCE_PORT": "{port}",
                    "LLM_THREADS": threads,
                    "LLM_MAX_CONCURRENT_REQUESTS": slots,
                    "LLM_CONTEXT_LENGTH": ctx,
                    "LLM_LOG_LEVEL": "WARNING",
                },
            ),
            True,
        ),
        (
            ServerSpec(
                "llama-server",
                [
                    args.llama_server,
                    "-m",
                    str(embedded_model_path()),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                    "-np",
                    slots,
                    "-t",
                    threads,
                    "-c",
                    str(int(ctx) * 8),
                    "--no-repack",
                    "--no-webui",
                ],
                "/health",
            ),
            False,
        ),
    ]
    report = {}
    for spec, ours in specs:
        server = RunningServer(spec, free_port(), Path("bench/results/logs"))
        try:
            server.wait_ready()
            report[spec.name] = asyncio.run(trials(server.url, ours, args.trials))
        finally:
            server.stop()
        print(
            f"{spec.name:15} {report[spec.name]['differing_from_alone']}/{args.trials} runs beside a long "
            f"generation differ from the prompt alone",
            flush=True,
        )
    Path("bench/results/batch-invariance.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
