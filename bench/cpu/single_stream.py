"""One client on CPU, this service against llama-server, request by request: a method that resolves a few percent.

`make bench-cpu` restarts the servers every round and compares whole passes, and on a shared machine passes of
one server drift by up to 30% from one minute to the next, so its one-client ratios carry intervals of ±5 to 12%.
Here both servers run side by side (the same settings as bench-cpu: 16 slots, the same KV cells, the same
threads) and take turns one request at a time: A B, B A, A B, … with a short pause between requests, so that
the two requests of a pair ran seconds apart, under the same drift. Each request is one ~100-token prompt of its
own and 128 output tokens (EOS ignored, temperature 0). Per request: tok/s (128 over its whole duration), TTFT
and the median of its inter-token gaps (ITL p50). The servers are restarted every block (`--pairs-per-block`),
so several processes of each server are sampled; each block's own median ratio is printed and kept too, which
shows whether processes differ beyond the requests' spread.

Ours against llama-server, per figure: the median of the pairs' ratios with a 95% Student-t interval on their
logs and its verdict (bench/paired.py), in the JSON under `comparisons`. The pairs are treated as independent:
the block medians say how far that holds.

    make bench-single-stream                  # or: .venv/bin/python -m bench.cpu.single_stream --llama-server PATH
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.cpu.run import HIGHER_IS_BETTER, PEER, server_specs
from bench.loadgen import Dialect, make_prompts, run_level
from bench.machine import machine
from bench.paired import METHOD, compare_rounds, comparison_lines, paired_ratio
from bench.result_files import unused
from bench.servers import RunningServer, free_port

RESULTS = Path(__file__).resolve().parents[1] / "results"
SERVERS = ("llm-inference", PEER)
FIGURES = ("output_tokens_per_second", "ttft_p50_ms", "itl_p50_ms")
LABELS = {"output_tokens_per_second": "tok/s", "ttft_p50_ms": "TTFT", "itl_p50_ms": "ITL p50"}
PAUSE_SECONDS = 0.2  # between requests: the last server's compute threads stop spinning before the next starts


def one_request(server: RunningServer, dialect: Dialect, prompt: str, max_tokens: int) -> dict[str, float]:
    figures = asyncio.run(run_level(server.url, dialect, [prompt], 1, max_tokens))
    if figures["failed"]:
        raise RuntimeError(f"{server.spec.name}: {figures['errors']}")
    return {figure: figures[figure] for figure in FIGURES}


def run_block(
    servers: list[tuple[RunningServer, Dialect]], pairs: int, max_tokens: int, block: int
) -> dict[str, list[dict[str, float]]]:
    """`pairs` pairs of requests, the order alternating; each request a prompt of its own."""
    figures: dict[str, list[dict[str, float]]] = {server.spec.name: [] for server, _ in servers}
    prompts = make_prompts(2 * pairs, 90, seed=10_000 + block)
    for pair in range(pairs):
        order = servers if pair % 2 == 0 else servers[::-1]
        for turn, (server, dialect) in enumerate(order):
            time.sleep(PAUSE_SECONDS)
            figures[server.spec.name].append(one_request(server, dialect, prompts[2 * pair + turn], max_tokens))
    return figures


def block_ratios(block: dict[str, list[dict[str, float]]]) -> dict[str, float | None]:
    """A block's median ratio per figure (ours / llama-server), to compare the blocks with each other."""
    return {
        figure: paired_ratio(
            [r[figure] for r in block[SERVERS[0]]], [r[figure] for r in block[PEER]], HIGHER_IS_BETTER[figure]
        )["median"]
        for figure in FIGURES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", required=True, help="path to the llama-server binary")
    parser.add_argument("--blocks", type=int, default=4, help="server restarts: processes of each server sampled")
    parser.add_argument("--pairs-per-block", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tag", help="suffix of the result files: single-stream-<date>-<tag>.json")
    parser.add_argument(
        "--ours-env", action="append", default=[], metavar="NAME=VALUE", help="an environment variable for ours only"
    )
    args = parser.parse_args()
    specs = [
        (spec, dialect)
        for spec, dialect in server_specs(args.llama_server, args.slots, args.threads, 512)
        if spec.name in SERVERS
    ]
    extra = dict(pair.split("=", 1) for pair in args.ours_env)
    specs = [
        (dataclasses.replace(spec, env={**spec.env, **extra}) if spec.name == SERVERS[0] else spec, dialect)
        for spec, dialect in specs
    ]
    load_at_start = os.getloadavg()
    blocks: list[dict[str, list[dict[str, float]]]] = []
    for block in range(args.blocks):
        running = [(RunningServer(spec, free_port(), RESULTS / "logs"), dialect) for spec, dialect in specs]
        try:
            for server, dialect in running:
                server.wait_ready()
                asyncio.run(run_level(server.url, dialect, make_prompts(2, 90, seed=-1), 1, 16))  # warm-up
            blocks.append(run_block(running, args.pairs_per_block, args.max_tokens, block))
        finally:
            for server, _ in running:
                server.stop()
        print(
            f"block {block + 1}/{args.blocks}: ours / llama-server, median of the pairs: "
            + "  ".join(
                f"{LABELS[f]} {ratio:.3f}" for f, ratio in block_ratios(blocks[-1]).items() if ratio is not None
            ),
            flush=True,
        )
    # Every pair is a "round" of bench/paired.py: request i of ours ran next to request i of llama-server.
    pairs = {name: [{"1": r} for block in blocks for r in block[name]] for name in SERVERS}
    compared = compare_rounds(pairs, PEER, {f: HIGHER_IS_BETTER[f] for f in FIGURES}, ["1"])
    summary = {
        name: {
            figure: {
                "median": statistics.median(r["1"][figure] for r in requests),
                "lowest": min(r["1"][figure] for r in requests),
                "highest": max(r["1"][figure] for r in requests),
            }
            for figure in FIGURES
        }
        for name, requests in pairs.items()
    }
    print(f"\n{'server':16} {'tok/s (lowest-highest)':>26} {'TTFT ms':>18} {'ITL p50 ms':>18}")
    for name, row in summary.items():
        print(
            f"{name:16} "
            + " ".join(f"{row[f]['median']:8.1f} ({row[f]['lowest']:6.1f}-{row[f]['highest']:6.1f})" for f in FIGURES)
        )
    for line in comparison_lines(compared, PEER, LABELS, note="pairs of requests; TTFT and ITL: lower is better"):
        print(line)
    stamp = datetime.date.today().isoformat()
    out = unused(RESULTS / (f"single-stream-{stamp}-{args.tag}.json" if args.tag else f"single-stream-{stamp}.json"))
    result: dict[str, Any] = {
        "date": stamp,
        "machine": machine(load_at_start),
        "settings": {**vars(args), "pause_seconds": PAUSE_SECONDS, "prompt_words": 90},
        "summary": summary,
        "block_ratios": [block_ratios(block) for block in blocks],
        "comparisons": compared,
        "method": f"{METHOD}; here a round is a pair of requests, one to each server, seconds apart",
        "requests": blocks,
    }
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    plot(pairs, out.with_suffix(".png"))
    print(f"\nwrote {out} and .png")


def plot(pairs: dict[str, list[dict[str, dict[str, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, requests in pairs.items():
        axis.plot([r["1"]["output_tokens_per_second"] for r in requests], marker=".", linewidth=0.8, label=name)
    axis.set_xlabel("pair of requests (in order; the servers restart every block)")
    axis.set_ylabel("one client's output tokens/s")
    axis.set_title("SmolLM2-135M Q4_1 on CPU, one client, request by request")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
