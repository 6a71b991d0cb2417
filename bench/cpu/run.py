"""CPU benchmark: this service vs llama.cpp's llama-server vs llama-cpp-python's server, in one run.

Same model (the embedded SmolLM2-135M-Instruct Q4_1), same prompts (~100 tokens), 128 output tokens with EOS
ignored, temperature 0, same load client. The servers' runs are interleaved round by round (the machines
drift): each round runs one pass of every server, the order rotating (A B, B A, A B, … for two servers), and
each figure is the median over the rounds, shown with its spread (lowest and highest pass). Each
`llm-inference*` server is then compared with llama-server round by round (bench/paired.py): per level and
figure the median of the rounds' ratios ours / llama-server with a 95% Student-t interval on their logs, and
whether it meets its target. Prints both tables, writes bench/results/cpu-<date>[-<tag>].json (the ratios under
`comparisons`; a later run of the same name adds -2, -3, …) and a PNG plot of throughput against concurrency.

    make bench-cpu                        # or: .venv/bin/python -m bench.cpu.run --rounds 3
    # before/after in one interleaved run: another checkout's service as one more server
    make bench-cpu BENCH_ARGS="--baseline-src ../main/src --servers llm-inference,llm-inference@baseline,llama-server"
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any, TypeVar

from bench.loadgen import OPENAI, OURS, Dialect, make_prompts, run_level
from bench.machine import machine
from bench.paired import METHOD, compare_rounds, comparison_lines
from bench.result_files import unused
from bench.servers import RunningServer, ServerSpec, free_port
from llm_inference.model_spec import embedded_model_path

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEFAULT_SERVERS = ("llm-inference", "llama-server", "llama_cpp.server")
METRICS = ("output_tokens_per_second", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")
# Which way is better, per metric, for the ratios against llama-server.
HIGHER_IS_BETTER = {
    "output_tokens_per_second": True,
    "ttft_p50_ms": False,
    "ttft_p99_ms": False,
    "itl_p50_ms": False,
    "itl_p99_ms": False,
}
LABELS = {
    "output_tokens_per_second": "tok/s",
    "ttft_p50_ms": "TTFT p50",
    "ttft_p99_ms": "TTFT p99",
    "itl_p50_ms": "ITL p50",
    "itl_p99_ms": "ITL p99",
}
PEER = "llama-server"
T = TypeVar("T")


def server_specs(
    llama_server: str, slots: int, threads: int, context_per_slot: int, baseline_src: str | None = None
) -> list[tuple[ServerSpec, Dialect]]:
    model = str(embedded_model_path())
    python = sys.executable
    ours = ServerSpec(
        "llm-inference",
        [python, "-m", "llm_inference", "serve"],
        "/health/ready",
        {
            "LLM_INFERENCE_HOSTNAME": "127.0.0.1",
            "LLM_INFERENCE_PORT": "{port}",
            "LLM_THREADS": str(threads),
            "LLM_MAX_CONCURRENT_REQUESTS": str(slots),
            "LLM_CONTEXT_LENGTH": str(context_per_slot),
            # The same KV cells in all as llama-server's -c below (our pool's default is 8,192 tokens).
            "LLM_KV_CACHE_TOKENS": str(context_per_slot * slots),
            "LLM_LOG_LEVEL": "WARNING",
        },
    )
    peer = ServerSpec(
        "llama-server",
        [
            llama_server,
            "-m",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "-np",
            str(slots),
            "-t",
            str(threads),
            "-tb",
            str(threads),
            "-c",
            str(context_per_slot * slots),
            "--kv-unified",
            "--no-repack",
            "--no-webui",
        ],
        "/health",
    )
    # llama-server as it starts by default: extra CPU buffer types (repacked weights) on. They change nothing
    # for the Q4_1 model (llama.cpp has no repacked layout for Q4_1), so the default comparison uses --no-repack.
    peer_defaults = ServerSpec(
        "llama-server+repack", [part for part in peer.command if part != "--no-repack"], "/health"
    )
    python_server = ServerSpec(
        "llama_cpp.server",
        [
            python,
            "-m",
            "bench.cpu.llama_cpp_server_no_repack",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--n_ctx",
            str(context_per_slot),
            # By default a new request interrupts the stream in progress; queue them instead (its lock).
            "--interrupt_requests",
            "False",
        ],
        "/v1/models",
    )
    # llama_cpp.server has no ignore_eos: ban SmolLM2's end tokens (<|endoftext|> 0, <|im_end|> 2) instead.
    # This service with a KV stream per slot instead of the shared pool (docs/cpu.md "KV memory"): the same cells.
    ours_per_slot = ServerSpec(
        "llm-inference+per-slot", ours.command, ours.ready_path, {**ours.env, "LLM_KV_CACHE_LAYOUT": "per-slot"}
    )
    specs = [
        (ours, OURS),
        (ours_per_slot, OURS),
        (peer, OPENAI),
        (peer_defaults, OPENAI),
        (python_server, Dialect(OPENAI.path, eos_token_ids=(0, 2))),
    ]
    if baseline_src:
        # The same service from another checkout (e.g. main before a change), its sources first on the path.
        env = {**ours.env, "PYTHONPATH": os.pathsep.join([str(Path(baseline_src).resolve()), os.getcwd()])}
        specs.append((ServerSpec("llm-inference@baseline", ours.command, ours.ready_path, env), OURS))
    return specs


async def measure(
    server: RunningServer, dialect: Dialect, levels: list[int], requests_per_client: int, max_tokens: int, seed: int
) -> dict[int, dict[str, float]]:
    await run_level(server.url, dialect, make_prompts(2, 90, seed=-1), 1, 8)  # warm-up
    figures = {}
    for level in levels:
        # New prompts per level and round: no server gets a prefix-cache hit from an earlier level.
        prompts = make_prompts(max(level * requests_per_client, 4), 90, seed=seed * 1000 + level)
        figures[level] = await run_level(server.url, dialect, prompts, level, max_tokens)
        row = figures[level]
        print(
            f"  {server.spec.name:17} c={level:<3} {row['output_tokens_per_second']:7.1f} tok/s  "
            f"TTFT p50 {row['ttft_p50_ms']:7.0f} ms  ITL p50 {row['itl_p50_ms']:6.1f} ms  "
            f"failed {row['failed']}",
            flush=True,
        )
    return figures


def round_order(specs: list[T], round_index: int) -> list[T]:
    """The servers' order in a round: rotated each round so no server always runs first (or last) in a drift;
    for two servers that is A B, B A, A B, …, so round i's two passes pair up either way round."""
    shift = round_index % len(specs)
    return specs[shift:] + specs[:shift]


Table = dict[str, dict[int, dict[str, float]]]


def median_table(runs: dict[str, list[dict[int, dict[str, float]]]], levels: list[int]) -> Table:
    return {
        name: {level: {m: statistics.median(r[level][m] for r in rounds) for m in METRICS} for level in levels}
        for name, rounds in runs.items()
    }


def spread_table(runs: dict[str, list[dict[int, dict[str, float]]]], levels: list[int]) -> dict[str, Any]:
    """Each metric's lowest and highest pass: how far one pass can be from the median on this machine."""
    return {
        name: {
            level: {m: [min(r[level][m] for r in rounds), max(r[level][m] for r in rounds)] for m in METRICS}
            for level in levels
        }
        for name, rounds in runs.items()
    }


def print_table(table: Table, spread: dict[str, Any], levels: list[int]) -> None:
    print(
        f"\n{'server':22} {'conc':>4} {'tok/s (passes)':>21} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} "
        f"{'ITL p99 (passes)':>20}"
    )
    for name, by_level in table.items():
        for level in levels:
            row, low_high = by_level[level], spread[name][level]
            tps, itl = low_high["output_tokens_per_second"], low_high["itl_p99_ms"]
            print(
                f"{name:22} {level:>4} {row['output_tokens_per_second']:7.1f} ({tps[0]:5.1f}-{tps[1]:5.1f}) "
                f"{row['ttft_p50_ms']:8.0f}ms {row['ttft_p99_ms']:8.0f}ms {row['itl_p50_ms']:6.1f}ms "
                f"{row['itl_p99_ms']:6.0f}ms ({itl[0]:4.0f}-{itl[1]:4.0f})"
            )


def comparisons(runs: dict[str, list[dict[int, dict[str, float]]]], levels: list[int]) -> dict[str, Any]:
    """Each `llm-inference*` server against llama-server, per level (a string, as in the JSON) and metric: the
    paired ratio over the rounds (bench/paired.py), round i of one with round i of the other. Empty when
    llama-server did not run."""
    paired_runs = {
        name: [{str(level): {m: passes[level][m] for m in METRICS} for level in levels} for passes in rounds]
        for name, rounds in runs.items()
    }
    return compare_rounds(paired_runs, PEER, HIGHER_IS_BETTER, [str(level) for level in levels])


def print_comparisons(compared: dict[str, Any]) -> None:
    for line in comparison_lines(compared, PEER, LABELS, note="TTFT and ITL: lower is better"):
        print(line)


def plot(table: Table, levels: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, by_level in table.items():
        axis.plot(levels, [by_level[level]["output_tokens_per_second"] for level in levels], marker="o", label=name)
    axis.set_xlabel("concurrent clients")
    axis.set_ylabel("aggregate output tokens/s (median)")
    axis.set_xticks(levels)
    axis.set_title("SmolLM2-135M Q4_1 on CPU, ~100-token prompts, 128 output tokens")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", required=True, help="path to the llama-server binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help="which servers, comma-separated")
    parser.add_argument("--baseline-src", help="a checkout's src/ to run as one more server, llm-inference@baseline")
    parser.add_argument("--tag", help="suffix of the result files: cpu-<date>-<tag>.json")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    wanted = args.servers.split(",")
    specs = server_specs(args.llama_server, args.slots, args.threads, 512, args.baseline_src)
    unknown = set(wanted) - {spec.name for spec, _ in specs}
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; known: {[spec.name for spec, _ in specs]}")
    specs = [(spec, dialect) for spec, dialect in specs if spec.name in wanted]
    runs: dict[str, list[dict[int, dict[str, float]]]] = {spec.name: [] for spec, _ in specs}
    load_at_start = os.getloadavg()  # other work on the machine: the figures are only as calm as it was
    log_dir = RESULTS / "logs"
    for round_index in range(args.rounds):
        order = round_order(specs, round_index)
        print(f"round {round_index + 1}/{args.rounds}", flush=True)
        for spec, dialect in order:
            server = RunningServer(spec, free_port(), log_dir)
            try:
                server.wait_ready()
                runs[spec.name].append(
                    asyncio.run(
                        measure(server, dialect, levels, args.requests_per_client, args.max_tokens, seed=round_index)
                    )
                )
            finally:
                server.stop()
    table, spread = median_table(runs, levels), spread_table(runs, levels)
    print_table(table, spread, levels)
    compared = comparisons(runs, levels)
    print_comparisons(compared)
    stamp = datetime.date.today().isoformat()
    RESULTS.mkdir(exist_ok=True)
    out = unused(RESULTS / (f"cpu-{stamp}-{args.tag}.json" if args.tag else f"cpu-{stamp}.json"))
    result = {
        "date": stamp,
        "machine": machine(load_at_start),
        "settings": vars(args),
        "median": table,
        "spread": spread,
        "rounds": runs,
        "comparisons": compared,
        "method": METHOD,
        "note": "extra CPU buffer types (repacked weights) off except in llama-server+repack and where "
        "LLM_WEIGHT_REPACK turns them on; llama.cpp has no repacked layout for Q4_1, so here they change nothing",
    }
    out.write_text(json.dumps(result, indent=2, default=str))
    plot(table, levels, out.with_suffix(".png"))
    print(f"\nwrote {out} and .png")


if __name__ == "__main__":
    main()
