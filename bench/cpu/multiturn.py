"""Multi-turn chat on CPU: how long the fifth turn of a conversation waits for its first token, this service
against llama-server with its prompt cache, at 1 and 8 conversations at once.

Every conversation is five turns on `/v1/chat/completions` (streamed, greedy, 16 answer tokens): a system
message, then each turn sends the whole history so far, in which the earlier answers are fixed texts of about
325 tokens (so both servers see the same prompts whatever the model wrote), and turn 5's prompt is about 1,500
tokens (each turn adds about 355: the answer before it and a question). A server that keeps a conversation's KV
cells reads only the new turn; one that does not reads the whole history again. Conversations differ from their first words, so nothing is shared between them. The
servers run one after the other, round by round in alternating order (A B, B A, A B, …); each figure is the
median over the rounds with its spread (lowest and highest round). Ours against llama-server, per level and
turn: the median of the rounds' ratios of TTFT p50 with a 95% Student-t interval on their logs and its verdict
(bench/paired.py; lower is better), in the JSON under `comparisons`. Our prefix-cache hit rate over the run
comes from /metrics.

    make bench-multiturn                  # or: .venv/bin/python -m bench.cpu.multiturn --llama-server PATH
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.cpu.run import server_specs
from bench.loadgen import WORDS
from bench.machine import machine
from bench.paired import METHOD, compare_rounds, comparison_lines
from bench.result_files import unused
from bench.servers import RunningServer, free_port

RESULTS = Path(__file__).resolve().parents[1] / "results"
TURNS = 5
ANSWER_WORDS = 305  # about 325 tokens of the embedded model's vocabulary: turn 5's prompt ~1,500 tokens
ANSWER_TOKENS = 16
SERVERS = ("llm-inference", "llama-server")
CONTEXT_PER_SLOT = 2048
MODEL = "smollm2-135m-instruct"
# The figures compared with llama-server, each round's own: TTFT p50 of every turn (lower is better).
COMPARED = {f"turn{turn}_ttft_p50_ms": False for turn in range(1, TURNS + 1)}
LABELS = {f"turn{turn}_ttft_p50_ms": f"turn {turn}" for turn in range(1, TURNS + 1)}


def conversation(seed: int) -> list[dict[str, str]]:
    """System message, then TURNS user messages with fixed assistant answers between them (the last turn's
    answer is what the server generates)."""
    rng = random.Random(seed)

    def words(count: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(count))

    messages = [{"role": "system", "content": f"Conversation {seed}. You are a helpful assistant. {words(20)}."}]
    for turn in range(TURNS):
        messages.append({"role": "user", "content": f"Question {turn + 1}: {words(25)}?"})
        if turn < TURNS - 1:
            messages.append({"role": "assistant", "content": words(ANSWER_WORDS) + "."})
    return messages


async def first_token_seconds(client: httpx.AsyncClient, url: str, messages: list[dict[str, str]]) -> float:
    # `model`: ours requires it on /v1 (as OpenAI does); llama-server serves its one model whatever it says.
    body = {"model": MODEL, "messages": messages, "max_tokens": ANSWER_TOKENS, "temperature": 0, "stream": True}
    started = time.perf_counter()
    first: float | None = None
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {") and '"content":"' in line.replace(": ", ":"):
                event = json.loads(line[6:])
                if any((choice.get("delta") or {}).get("content") for choice in event.get("choices") or ()):
                    first = time.perf_counter()
    if first is None:
        raise RuntimeError("no answer text")
    return first - started


async def run_conversations(url: str, seeds: list[int]) -> list[list[float]]:
    """Each conversation's five turns in order, the conversations side by side: TTFT per turn, per conversation."""
    # A new connection per request: llama-server sometimes closes a kept-alive connection after a stream, which
    # the next request would then find dead (and a local connection costs both servers alike, well under 1 ms).
    limits = httpx.Limits(max_connections=len(seeds), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:

        async def one(seed: int) -> list[float]:
            messages = conversation(seed)
            # Turn k sends the system message and the first k exchanges: 2k messages.
            return [await first_token_seconds(client, url, messages[: 2 * turn + 2]) for turn in range(TURNS)]

        return list(await asyncio.gather(*(one(seed) for seed in seeds)))


def prefix_counters(url: str) -> tuple[float, float] | None:
    text = httpx.get(url + "/metrics", timeout=30).text
    found = [
        re.search(rf"^llm_prefix_cache_{name}_total\{{[^}}]*\}} (\S+)$", text, re.M) for name in ("queries", "hits")
    ]
    if not all(found):
        return None
    return float(found[0][1]), float(found[1][1])  # type: ignore[index]


def measure(server: RunningServer, levels: list[int], round_index: int) -> dict[str, Any]:
    asyncio.run(run_conversations(server.url, [-1 - round_index]))  # warm-up, a conversation of its own
    before = prefix_counters(server.url) if server.spec.name.startswith("llm-inference") else None
    figures: dict[str, Any] = {}
    for level in levels:
        seeds = [100_000 * (round_index + 1) + 1000 * level + i for i in range(level)]
        ttfts = asyncio.run(run_conversations(server.url, seeds))
        by_turn = [[conv[turn] * 1000 for conv in ttfts] for turn in range(TURNS)]
        figures[str(level)] = {
            "turn_ttft_p50_ms": [statistics.median(values) for values in by_turn],
            "turn5_ttft_ms": sorted(by_turn[-1]),
        }
        turns = " ".join(f"{statistics.median(v):6.0f}" for v in by_turn)
        print(f"  {server.spec.name:14} c={level:<2} TTFT p50 by turn (ms): {turns}", flush=True)
    if before is not None and (after := prefix_counters(server.url)) is not None:
        queries, hits = after[0] - before[0], after[1] - before[1]
        figures["prefix_cache_hit_rate"] = hits / queries if queries else None
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", required=True, help="path to the llama-server binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/multiturn-<date>.json)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    specs = [spec for spec, _ in server_specs(args.llama_server, args.slots, args.threads, CONTEXT_PER_SLOT)]
    specs = [spec for spec in specs if spec.name in SERVERS]
    runs: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in specs}
    load_at_start = os.getloadavg()
    for round_index in range(args.rounds):
        order = specs if round_index % 2 == 0 else specs[::-1]
        print(f"round {round_index + 1}/{args.rounds}", flush=True)
        for spec in order:
            server = RunningServer(spec, free_port(), RESULTS / "logs")
            try:
                server.wait_ready()
                runs[spec.name].append(measure(server, levels, round_index))
            finally:
                server.stop()
    summary = summarize(runs, levels)
    print_summary(summary, levels)
    compared = comparisons(runs, levels)
    print_comparisons(compared)
    stamp = datetime.date.today().isoformat()
    out = args.out or unused(RESULTS / f"multiturn-{stamp}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "date": stamp,
        "machine": machine(load_at_start),
        "settings": {**vars(args), "out": str(out), "turns": TURNS, "answer_tokens": ANSWER_TOKENS},
        "summary": summary,
        "comparisons": compared,
        "method": METHOD,
        "rounds": runs,
    }
    out.write_text(json.dumps(result, indent=2, default=str))
    plot(summary, levels, out.with_suffix(".png"))
    print(f"\nwrote {out} and .png")


def summarize(runs: dict[str, list[dict[str, Any]]], levels: list[int]) -> dict[str, Any]:
    """Per server and level: turn 5's TTFT (median over rounds of each round's median, and the rounds' range),
    each turn's median, and our hit rate."""
    summary: dict[str, Any] = {}
    for name, rounds in runs.items():
        summary[name] = {}
        for level in map(str, levels):
            turn5 = [statistics.median(r[level]["turn5_ttft_ms"]) for r in rounds]
            summary[name][level] = {
                "turn5_ttft_p50_ms": statistics.median(turn5),
                "turn5_ttft_p50_ms_rounds": [min(turn5), max(turn5)],
                "turn_ttft_p50_ms": [
                    statistics.median(r[level]["turn_ttft_p50_ms"][t] for r in rounds) for t in range(TURNS)
                ],
            }
        rates = [r["prefix_cache_hit_rate"] for r in rounds if r.get("prefix_cache_hit_rate") is not None]
        if rates:
            summary[name]["prefix_cache_hit_rate"] = statistics.median(rates)
    return summary


def print_summary(summary: dict[str, Any], levels: list[int]) -> None:
    print(f"\n{'server':14} {'conv':>4} {'turn-5 TTFT p50 (rounds)':>28}   TTFT p50 by turn (ms)")
    for name, by_level in summary.items():
        for level in map(str, levels):
            row = by_level[level]
            low, high = row["turn5_ttft_p50_ms_rounds"]
            turns = " ".join(f"{v:6.0f}" for v in row["turn_ttft_p50_ms"])
            print(f"{name:14} {level:>4} {row['turn5_ttft_p50_ms']:10.0f} ms ({low:6.0f}-{high:6.0f})   {turns}")
        if "prefix_cache_hit_rate" in by_level:
            print(f"{name:14} prefix-cache hit rate over the run: {by_level['prefix_cache_hit_rate']:.1%}")


def comparisons(runs: dict[str, list[dict[str, Any]]], levels: list[int]) -> dict[str, Any]:
    """Ours against llama-server, per level (conversations at once) and turn: the paired ratio of each round's
    TTFT p50 (bench/paired.py), round i of one with round i of the other. Empty when llama-server did not run."""
    paired_runs = {
        name: [
            {
                level: {f"turn{t + 1}_ttft_p50_ms": ms for t, ms in enumerate(figures[level]["turn_ttft_p50_ms"])}
                for level in map(str, levels)
            }
            for figures in rounds
        ]
        for name, rounds in runs.items()
    }
    return compare_rounds(paired_runs, SERVERS[1], COMPARED, [str(level) for level in levels])


def print_comparisons(compared: dict[str, Any]) -> None:
    note = "TTFT p50 by turn, lower is better"
    for line in comparison_lines(compared, SERVERS[1], LABELS, level_label="conv", note=note):
        print(line)


def plot(summary: dict[str, Any], levels: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(levels), figsize=(5 * len(levels), 4), squeeze=False)
    for axis, level in zip(axes[0], map(str, levels), strict=True):
        for name, by_level in summary.items():
            axis.plot(range(1, TURNS + 1), by_level[level]["turn_ttft_p50_ms"], marker="o", label=name)
        axis.set_title(f"{level} conversation(s) at once")
        axis.set_xlabel("turn")
        axis.set_ylabel("TTFT p50 (ms)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Multi-turn chat on CPU: time to first token by turn (SmolLM2-135M Q4_1)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
