"""This service on vLLM against `vllm serve`: a matrix of workloads x concurrency, and vLLM's offline limit.

Runs on the GPU machine (see bench/gpu/README.md). The servers start one after the other, the second once
the first is ready (two vLLM engines profiling GPU memory at once corrupt each other's KV-cache sizing), and
stay up (an idle one does not touch the GPU). Before anything is measured, each one's effective engine
configuration is read from its log (engine_log.py) and compared: a difference not made on purpose stops the
run (exit 2) with the diff; KV-cache capacities differing by more than 3% mark the run invalid. Both servers
are driven over OpenAI's `/v1/completions` (streamed; `ours_api` drives this service's own
`/api/generate/stream` beside them when asked). Each cell (workload x concurrency, bench/gpu/load_client.py
over several client processes) runs A B B A over the servers, the first alternating from cell to cell; every
pass has new seeded random prompts, the same for both servers, so prefix caching (on in both) cannot reuse
them. Greedy, and every request generates exactly the workload's output tokens (ignore_eos). Requests per
pass are sized from expected rates (--rates) to about --pass-seconds each; the whole run's time is estimated
up front. Once the servers have stopped, vLLM's offline engine (offline_limit.py, own process) generates on
the largest level's prompts of each workload: the limit a server can approach.

    python bench/gpu/run_bench.py --model-dir DIR --out results.json \
        [--workloads 256x128,1024x256] [--levels 1,16,64,256] [--tensor-parallel-size 1] [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # the project's root: bench.paired
from engine_log import compare, engine_report

from bench.paired import FLOOR, RESOLUTION, describe, paired_ratio, rounds_order

ROOT = Path(__file__).resolve().parents[2]
OUR_PORT, VLLM_PORT = 8091, 8092
KV_TOLERANCE = 0.03  # KV-cache capacities further apart than this make a run invalid
# Per pass, beyond its load: the client's synchronized start (0.3 s, its processes kept from pass to pass), the
# last streams' tail and the summary.
PASS_OVERHEAD_S = 0.6
WARMUP_REQUESTS = 32
# Expected output tok/s of the slower server at each level on 256 in / 128 out, start-up seconds, and the
# offline engine's tok/s on 256/128 with its start-up, for sizing passes and estimating the run. smollm2-135m:
# H200 run of 2026-11-30 (bench/results/gpu-2026-11-30) and the H100 run of issue 23 (offline 31,669 tok/s);
# the 8B ones are guesses (~70 tok/s one stream, ~6,000 at 256 on 1024/256), to be replaced once measured.
RATES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {
        "rates": {1: 440, 16: 4800, 64: 14000, 256: 14000},
        "startup": 190,
        "offline_rate": 26000,
        "offline_startup": 60,
    },
    "llama3-8b-tp1": {
        "rates": {1: 84, 16: 1200, 64: 3600, 256: 7200},
        "startup": 270,
        "offline_rate": 9000,
        "offline_startup": 90,
    },
    "llama3-8b-tp2": {
        "rates": {1: 130, 16: 1900, 64: 5400, 256: 10000},
        "startup": 300,
        "offline_rate": 12000,
        "offline_startup": 110,
    },
}


@dataclass(frozen=True)
class Workload:
    input_tokens: int
    output_tokens: int

    @property
    def name(self) -> str:
        return f"{self.input_tokens}x{self.output_tokens}"

    @classmethod
    def parse(cls, text: str) -> Workload:
        prompt, _, output = text.partition("x")
        if not (prompt.isdigit() and output.isdigit() and int(prompt) > 0 and int(output) > 0):
            raise argparse.ArgumentTypeError(f"workload {text!r} is not INPUTxOUTPUT tokens, e.g. 1024x256")
        return cls(int(prompt), int(output))


def shaped_rate(rate_256x128: float, workload: Workload) -> float:
    """Output tok/s of a shape from that of 256/128: a request costs its output tokens plus its prompt at one
    eighth of a decoded token each (prefill runs in large batches)."""
    work_rate = rate_256x128 * (128 + 256 / 8) / 128
    return work_rate * workload.output_tokens / (workload.output_tokens + workload.input_tokens / 8)


def expected_rate(rates: dict[int, float], level: int, workload: Workload) -> float:
    """Output tok/s expected at a level and shape (the nearest level measured)."""
    nearest = min(rates, key=lambda k: abs(math.log2(k) - math.log2(level)))
    return shaped_rate(rates[nearest], workload)


def requests_per_pass(
    level: int, workload: Workload, rates: dict[int, float], pass_seconds: float, min_waves: int = 1
) -> int:
    """About pass_seconds of load, in whole waves of `level` requests, at least min_waves (4 requests at c=1)."""
    wanted = pass_seconds * expected_rate(rates, level, workload) / workload.output_tokens
    waves = max(4 if level == 1 else min_waves, math.ceil(wanted / level))
    return waves * level


def offline_prompts(workload: Workload, args: argparse.Namespace) -> int:
    """Prompts for one timed offline run: about --offline-seconds of generation, and at least three batches of
    max_num_seqs (a run of one batch, as the 256 prompts of 1900x64 in issue 23, is mostly its ramp and tail)."""
    rate = shaped_rate(RATES[args.rates]["offline_rate"], workload)
    wanted = math.ceil(args.offline_seconds * rate / workload.output_tokens)
    return max(3 * args.max_num_seqs, wanted)


def parse_cpus(text: str) -> frozenset[int]:
    """`0-7` or `0,2,4-6` -> the set of core numbers."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def split_cpus(available: frozenset[int]) -> tuple[frozenset[int], frozenset[int]] | None:
    """Servers on the lower half of the cores, the load client on the upper half (16 cores: 0-7 and 8-15);
    nothing pinned below 4 cores."""
    if len(available) < 4:
        return None
    ordered = sorted(available)
    half = len(ordered) // 2
    return frozenset(ordered[:half]), frozenset(ordered[half:])


def cpu_text(cpus: frozenset[int] | None) -> str:
    if not cpus:
        return "any"
    ordered, runs = sorted(cpus), []
    start = previous = ordered[0]
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == previous + 1:
            previous = cpu
            continue
        runs.append(f"{start}-{previous}" if previous > start else str(start))
        if cpu is not None:
            start = previous = cpu
    return ",".join(runs)


def auto_max_model_len(workloads: list[Workload]) -> int:
    longest = max(w.input_tokens + w.output_tokens for w in workloads)
    return max(2048, 1 << (longest - 1).bit_length())


class PromptMaker:
    """Random-token prompts (as text), like vLLM's random dataset; seeded, so both servers get the same."""

    def __init__(self, model_dir: str) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        special = set(self.tokenizer.all_special_ids)
        # no token that decodes to a NUL: this service refuses prompts containing one (422)
        self.vocabulary = [
            i
            for i, text in enumerate(self.tokenizer.batch_decode([[i] for i in range(self.tokenizer.vocab_size)]))
            if i not in special and "\x00" not in text
        ]

    def make(self, count: int, length: int, seed: int) -> list[str]:
        rng = random.Random(seed)
        texts = self.tokenizer.batch_decode([rng.choices(self.vocabulary, k=length) for _ in range(count)])
        # decoding then encoding can merge tokens; trim back to the target length
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return self.tokenizer.batch_decode([ids[:length] for ids in encoded])


def start_ours(model_dir: str, log: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}",
        "LLM_BACKEND": "vllm",
        "LLM_ALLOWED_MODELS": model_dir,
        "LLM_INFERENCE_HOSTNAME": "127.0.0.1",
        "LLM_INFERENCE_PORT": str(OUR_PORT),
        "LLM_MAX_MODEL_LEN": str(args.max_model_len),
        "LLM_GPU_MEMORY_UTILIZATION": str(args.gpu_memory_utilization),
        "LLM_TENSOR_PARALLEL_SIZE": str(args.tensor_parallel_size),
        "LLM_MAX_CONCURRENT_REQUESTS": str(args.max_num_seqs),
        "LLM_MAX_QUEUED_REQUESTS": "1024",
        "LLM_LOG_FORMAT": "json",
    }
    return launch([sys.executable, "-m", "llm_inference", "serve"], log, args.server_cpus, env)


def launch(
    command: list[str], log: Path, cpus: frozenset[int] | None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A server in its own session (stop() ends its whole group), its output in `log`, pinned to `cpus` (its
    processes, the engine core included, inherit the affinity)."""
    return subprocess.Popen(
        command,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )


def start_vllm(model_dir: str, log: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.cli.main",
        "serve",
        model_dir,
        "--host",
        "127.0.0.1",
        "--port",
        str(VLLM_PORT),
        "--served-model-name",
        "bench",
        "--max-model-len",
        str(args.max_model_len),
        "--gpu-memory-utilization",
        str(args.gpu_memory_utilization),
        "--tensor-parallel-size",
        str(args.tensor_parallel_size),
        "--max-num-seqs",
        str(args.max_num_seqs),
    ]
    return launch(command, log, args.server_cpus)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    api: str  # the load client's API name: "openai" (/v1/completions) or "ours" (/api/generate/stream)
    ready: str  # the path answering 200 once it serves
    log: Path
    model: str  # the model name its /v1 answers to


def start_server(name: str, model_dir: str, log: Path, args: argparse.Namespace) -> Server:
    if name == "ours":
        process = start_ours(model_dir, log, args)
        return Server(process, f"http://127.0.0.1:{OUR_PORT}", "openai", "/health/ready", log, model_dir)
    process = start_vllm(model_dir, log, args)
    return Server(process, f"http://127.0.0.1:{VLLM_PORT}", "openai", "/health", log, "bench")


def vllm_bench_serve(
    server: Server, model_dir: str, concurrency: int, workload: Workload, out: Path, name: str
) -> dict[str, Any]:
    """vLLM's own benchmark client against one server's /v1/completions: random prompts, greedy."""
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.cli.main",
        "bench",
        "serve",
        "--backend",
        "openai",
        "--base-url",
        server.url,
        "--endpoint",
        "/v1/completions",
        "--model",
        server.model,
        "--tokenizer",
        model_dir,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(workload.input_tokens),
        "--random-output-len",
        str(workload.output_tokens),
        "--ignore-eos",
        "--num-prompts",
        str(4 * concurrency),
        "--max-concurrency",
        str(concurrency),
        "--seed",
        str(concurrency + len(name)),
        "--save-result",
        "--result-dir",
        str(out.parent),
        "--result-filename",
        f"vllm-bench-{name}.json",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    out.with_name(f"vllm-bench-{name}.log").write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        return {"error": run.stderr[-2000:]}
    saved = json.loads(out.with_name(f"vllm-bench-{name}.json").read_text())
    keys = ("completed", "output_throughput", "median_ttft_ms", "p99_ttft_ms", "median_itl_ms", "p99_itl_ms")
    return {key: saved.get(key) for key in keys}


def wait_until(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 600) -> float:
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout} s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def frontend_pid(name: str, process: subprocess.Popen[bytes]) -> int:
    """The process running the HTTP layer: Granian's worker for ours, the API server itself for vllm serve."""
    if name != "ours":
        return process.pid
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    return int(children[0])


def profile_frontend(
    py_spy: str, name: str, server: Server, level: int, prompts: list[str], workload: Workload, args: Any, pool: Any
) -> None:
    """An extra, uncounted pass with py-spy sampling the front end: it must not skew the measured cells."""
    output = Path(args.out).with_name(f"{name}-{workload.name}-c{level}.pyspy.txt")
    pid = str(frontend_pid(name, server.process))
    sampler = subprocess.Popen(
        [py_spy, "record", "--format", "raw", "--nonblocking", "-r", "200", "-d", "10", "-p", pid, "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    pool.run(server.api, server.url, prompts, level, workload.output_tokens, model=server.model)
    sampler.wait()


def run_offline(
    args: argparse.Namespace, workloads: dict[str, Any], max_num_batched_tokens: int | None
) -> dict[str, Any]:
    """offline_limit.py in its own process (its GPU memory is freed when it exits), the servers' settings and
    cores."""
    out = Path(args.out)
    prompts_file, result_file = out.with_name("offline-prompts.json"), out.with_name("offline.json")
    prompts_file.write_text(json.dumps(workloads))
    command = [
        sys.executable,
        str(Path(__file__).with_name("offline_limit.py")),
        "--model-dir",
        args.model_dir,
        "--prompts",
        str(prompts_file),
        "--out",
        str(result_file),
        "--max-model-len",
        str(args.max_model_len),
        "--gpu-memory-utilization",
        str(args.gpu_memory_utilization),
        "--max-num-seqs",
        str(args.max_num_seqs),
        "--tensor-parallel-size",
        str(args.tensor_parallel_size),
    ]
    if max_num_batched_tokens:
        command += ["--max-num-batched-tokens", str(max_num_batched_tokens)]
    cpus = args.server_cpus
    with out.with_name("offline.log").open("wb") as log:
        run = subprocess.run(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    prompts_file.unlink()
    if run.returncode != 0:
        return {"error": f"offline_limit.py exited with {run.returncode}; see offline.log"}
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Requests per pass and passes of every cell, the offline runs' sizes, and the run's expected duration."""
    preset = RATES[args.rates]
    cells, load_seconds, prompt_tokens = [], 0.0, 0
    for w_index, workload in enumerate(args.workloads):
        for l_index, level in enumerate(args.levels):
            requests = requests_per_pass(level, workload, preset["rates"], args.pass_seconds, args.min_waves)
            seconds = requests * workload.output_tokens / expected_rate(preset["rates"], level, workload)
            order = rounds_order(args.servers, args.rounds, w_index * len(args.levels) + l_index)
            load_seconds += len(order) * (seconds + PASS_OVERHEAD_S)
            prompt_tokens += args.rounds * requests * workload.input_tokens
            cells.append(
                {
                    "workload": workload.name,
                    "level": level,
                    "requests": requests,
                    "pass_s": round(seconds, 1),
                    "rounds": args.rounds,
                    "order": order,
                }
            )
    offline: dict[str, Any] = {}
    offline_seconds = 0.0
    if not args.no_offline:
        offline_seconds = preset["offline_startup"]
        for workload in args.workloads:
            prompts = offline_prompts(workload, args)
            seconds = prompts * workload.output_tokens / shaped_rate(preset["offline_rate"], workload)
            offline[workload.name] = {"prompts": prompts, "repeats": args.offline_repeats, "run_s": round(seconds, 1)}
            offline_seconds += args.offline_repeats * seconds + 2  # + its warm-up
    startup = preset["startup"]
    return {
        "cells": cells,
        "offline": offline,
        "prompt_tokens": prompt_tokens,
        "server_cpus": cpu_text(args.server_cpus),
        "client_cpus": cpu_text(args.client_cpus),
        "load_seconds": round(load_seconds),
        "startup_seconds": startup,
        "offline_seconds": round(offline_seconds),
        "total_seconds": round(load_seconds + startup + offline_seconds),
    }


def print_plan(estimate: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"rates preset {args.rates}; max_model_len {args.max_model_len}; servers {','.join(args.servers)}")
    print(
        f"cores: servers {estimate['server_cpus']}, load client ({args.processes} processes) {estimate['client_cpus']}"
    )
    print(
        f"each cell: {args.rounds} rounds, the order alternating (t-interval on the rounds' log ratios, met: lower"
        f" end >= {FLOOR} and median >= 1.0, resolved: within ±{RESOLUTION:.0%})"
    )
    for cell in estimate["cells"]:
        order = " ".join("A" if name == args.servers[0] else "B" for name in cell["order"][:8])
        print(
            f"  {cell['workload']:>9} c={cell['level']:<4} {cell['requests']:>5} requests/pass, ~{cell['pass_s']} s,"
            f" {len(cell['order'])} passes ({order} …)"
        )
    for name, run in estimate["offline"].items():
        print(f"  offline {name:>9}: {run['prompts']} prompts, ~{run['run_s']} s, x{run['repeats']}")
    print(f"prompts to make: {estimate['prompt_tokens'] / 1e6:.1f} M tokens (while the first server starts)")
    print(
        f"estimate: load ~{estimate['load_seconds'] / 60:.1f} min + server start-ups ~{estimate['startup_seconds']} s"
        f" + offline ~{estimate['offline_seconds']} s = ~{estimate['total_seconds'] / 60:.1f} min",
        flush=True,
    )


def check_engines(servers: dict[str, Server]) -> dict[str, Any]:
    """Both servers' effective engine configuration and KV capacity, read from their logs once ready."""
    engines = {name: engine_report(s.log.read_text(errors="replace")) for name, s in servers.items()}
    capacities = [e["kv_cache_tokens"] for e in engines.values()]
    kv_valid = None not in capacities and max(capacities) <= (1 + KV_TOLERANCE) * min(capacities)
    diff = compare({name: e["effective"] for name, e in engines.items()})
    # settings a log did not show cannot be compared: the run says so rather than pass them as equal
    diff["unverified"] = {name: e["missing"] for name, e in engines.items() if e["missing"]}
    return {"engines": engines, "kv_cache_tokens": capacities, "kv_valid": kv_valid, "config": diff}


def pass_summary(run: list[dict[str, Any]], level: int) -> dict[str, Any]:
    from load_client import summarize

    full = summarize([run], level)
    keys = ("output_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "errors")
    return {key: full.get(key) for key in keys}


# The figures compared per cell, each pass's own: (key in a pass summary, higher is better).
COMPARED = (("output_tokens_per_s", True), ("ttft_p50_ms", False), ("ttft_p99_ms", False))


def compare_cell(passes: dict[str, list[dict[str, Any]]], baseline: str = "vllm_serve") -> dict[str, Any]:
    """Each other server against the baseline on every compared figure, pass i of one with pass i of the other."""
    comparisons: dict[str, Any] = {}
    if baseline not in passes:
        return comparisons
    for name, own in passes.items():
        if name == baseline:
            continue
        comparisons[name] = {
            key: paired_ratio([p.get(key) for p in own], [p.get(key) for p in passes[baseline]], higher)
            for key, higher in COMPARED
        }
    return comparisons


def run_cell(
    run_pass: Any, names: list[str], rounds: int, cell: int, level: int, prompt_sets: list[list[str]]
) -> dict[str, list[list[dict[str, Any]]]]:
    """A cell's passes in their order (bench.paired.rounds_order), round j on prompt set j for every server;
    run_pass(name, prompts) -> the pass's per-request records."""
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in names}
    for name in rounds_order(names, rounds, cell):
        runs[name].append(run_pass(name, prompt_sets[len(runs[name])]))
    return runs


def cell_result(runs: dict[str, list[list[dict[str, Any]]]], level: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per server its summary over all passes (tok/s also the median of the passes') with `passes`; the
    comparisons with their intervals."""
    from load_client import summarize

    results: dict[str, Any] = {}
    for name, server_runs in runs.items():
        result = summarize(server_runs, level)
        result["passes"] = [pass_summary(run, level) for run in server_runs]
        rates = [p["output_tokens_per_s"] for p in result["passes"] if p.get("output_tokens_per_s")]
        result["median_pass_output_tokens_per_s"] = statistics.median(rates) if rates else None
        results[name] = result
    return results, compare_cell({name: r["passes"] for name, r in results.items()})


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "—"


def table(report: dict[str, Any]) -> str:
    """Per workload: each server's combined figures and its passes, the ratios with their intervals, the
    offline limit."""
    labels = {"ours": "ours", "ours_api": "ours /api", "vllm_serve": "vllm serve"}
    lines = []
    validity = "VALID" if report["valid"] else "INVALID"
    lines.append(
        f"{validity}: KV cache tokens {report['kv_cache_tokens']} (≤ {KV_TOLERANCE:.0%} apart: {report['kv_valid']});"
        f" engine settings differing: {sorted(report['engine_config']['differing']) or 'none'};"
        f" not in a log: {report['engine_config'].get('unverified') or 'none'}"
    )
    if summary := report.get("summary"):
        lines.append(
            f"cells met (tok/s, lower end of the 95% interval >= {FLOOR}, median >= 1.0): {summary['met']} of"
            f" {summary['cells']}; resolved to ±{RESOLUTION:.0%}: {summary['resolved']}"
        )
    comparisons = report.get("comparisons", {})
    for workload, servers in report["results"].items():
        offline = report.get("offline", {}).get("workloads", {}).get(workload, {}).get("output_tokens_per_s")
        lines += [
            "",
            f"### {workload} (input x output tokens); offline engine: {offline or '—'} tok/s",
            "",
            "| c | server | tok/s (all passes) | passes | TTFT p50 / p99 ms | ITL p50 / p99 ms | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        levels = [r["concurrency"] for r in next(iter(servers.values()))]
        for index, level in enumerate(levels):
            for name, rows in servers.items():
                r = rows[index]
                passes = " / ".join(f"{p['output_tokens_per_s'] or 0:,.0f}" for p in r.get("passes", []))
                lines.append(
                    f"| {level} | {labels.get(name, name)} | {r.get('output_tokens_per_s') or 0:,.0f} | {passes} | "
                    f"{r.get('ttft_p50_ms')} / {r.get('ttft_p99_ms')} | {r.get('itl_p50_ms')} / "
                    f"{r.get('itl_p99_ms')} | {r['errors']} |"
                )
            for name, figures in comparisons.get(workload, {}).get(str(level), {}).items():
                lines.append(
                    f"| {level} | **{labels.get(name, name)} / vllm serve** |"
                    f" **{describe(figures['output_tokens_per_s'])}** | |"
                    f" {describe(figures['ttft_p50_ms'])} / {describe(figures['ttft_p99_ms'])} | | |"
                )
        if offline:
            top = levels[-1]
            shares = ", ".join(
                f"{labels.get(name, name)} {ratio(rows[-1].get('output_tokens_per_s'), offline)}"
                for name, rows in servers.items()
            )
            lines.append(f"\nAt c={top}, share of the offline engine's tok/s: {shares}")
    lines.append(
        "\nRatios: median of the rounds' ratios [95% t-interval on their logs] (bench/paired.py); TTFT: lower"
        " is better."
    )
    return "\n".join(lines)


def summarize_comparisons(comparisons: dict[str, dict[str, dict[str, Any]]], name: str = "ours") -> dict[str, int]:
    cells = [c[name]["output_tokens_per_s"] for levels in comparisons.values() for c in levels.values() if name in c]
    return {
        "cells": len(cells),
        "met": sum(c["met"] for c in cells),
        "resolved": sum(c["resolved"] for c in cells),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--model-name", default="SmolLM2-135M-Instruct (bf16, converted from the embedded GGUF)")
    parser.add_argument("--out", required=True, help="results JSON path (logs are written beside it)")
    parser.add_argument(
        "--workloads", default="256x128,1024x256,4096x256,1900x64,128x512", help="INPUTxOUTPUT tokens, comma-separated"
    )
    parser.add_argument("--levels", default="1,16,64,256")
    parser.add_argument("--rates", choices=sorted(RATES), default="smollm2-135m", help="expected rates preset")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per cell: one pass of each server each")
    parser.add_argument("--pass-seconds", type=float, default=2.0, help="aimed duration of one pass")
    parser.add_argument("--min-waves", type=int, default=1, help="least requests per pass, in multiples of the level")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.4, help="each server's share")
    parser.add_argument("--max-model-len", type=int, help="default: a power of two fitting the longest workload")
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--processes", type=int, default=8, help="load client processes")
    parser.add_argument("--server-cpus", help="cores of the servers and the offline engine (default: lower half)")
    parser.add_argument("--client-cpus", help="cores of the load client and this script (default: upper half)")
    parser.add_argument(
        "--servers", default="vllm_serve,ours", help="in start order; ours_api is ours over /api/generate/stream"
    )
    parser.add_argument("--no-offline", action="store_true", help="skip vLLM's offline engine")
    parser.add_argument("--offline-seconds", type=float, default=6.0, help="aimed duration of one offline run")
    parser.add_argument("--offline-repeats", type=int, default=2, help="timed offline runs per workload (median)")
    parser.add_argument(
        "--ignore-config-diff", action="store_true", help="measure even when the engine configurations differ"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the estimate, run nothing")
    parser.add_argument("--py-spy", help="path of py-spy: sample each front end during an extra pass")
    parser.add_argument("--profile-levels", default="1,256", help="comma-separated concurrencies to sample")
    parser.add_argument(
        "--vllm-bench-serve", type=int, metavar="CONCURRENCY", help="also run `vllm bench serve` at this concurrency"
    )
    args = parser.parse_args(argv)
    try:
        args.workloads = [Workload.parse(w) for w in args.workloads.split(",")]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: an interval needs two pairs")
    args.levels = sorted(int(x) for x in args.levels.split(","))
    args.servers = args.servers.split(",")
    args.max_model_len = args.max_model_len or auto_max_model_len(args.workloads)
    split = split_cpus(frozenset(os.sched_getaffinity(0)))
    args.server_cpus = parse_cpus(args.server_cpus) if args.server_cpus else (split[0] if split else None)
    args.client_cpus = parse_cpus(args.client_cpus) if args.client_cpus else (split[1] if split else None)
    if args.server_cpus and args.client_cpus and args.server_cpus & args.client_cpus:
        parser.error(f"--server-cpus and --client-cpus share cores {cpu_text(args.server_cpus & args.client_cpus)}")
    config = Path(args.model_dir, "config.json")
    positions = json.loads(config.read_text()).get("max_position_embeddings") if config.exists() else None
    if positions and args.max_model_len > positions:
        parser.error(f"max_model_len {args.max_model_len} exceeds the model's max_position_embeddings {positions}")
    longest = max(w.input_tokens + w.output_tokens for w in args.workloads)
    if longest > args.max_model_len:
        parser.error(f"a workload needs {longest} tokens, max_model_len is {args.max_model_len}")
    return args


def main() -> None:
    args = parse_args()
    estimate = plan(args)
    print_plan(estimate, args)
    if args.dry_run:
        return
    from load_client import ClientPool

    if args.client_cpus:  # this script (prompts, summaries) beside the client, off the servers' cores
        os.sched_setaffinity(0, args.client_cpus)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    requests = {(c["workload"], c["level"]): c["requests"] for c in estimate["cells"]}
    names = args.servers
    servers: dict[str, Server] = {}
    startup: dict[str, float] = {}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {w.name: {n: [] for n in names} for w in args.workloads}
    comparisons: dict[str, dict[str, Any]] = {w.name: {} for w in args.workloads}
    bench_serve: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "model": args.model_name,
        "model_dir": args.model_dir,
        "workloads": [
            {
                "name": w.name,
                "input_tokens": w.input_tokens,
                "output_tokens": w.output_tokens,
                "requests_per_pass": {str(level): requests[(w.name, level)] for level in args.levels},
            }
            for w in args.workloads
        ],
        "engine": {
            "max_model_len": args.max_model_len,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "max_num_seqs": args.max_num_seqs,
            "tensor_parallel_size": args.tensor_parallel_size,
            "prefix_caching": "default (on) in both, new prompts for every round",
        },
        "client": {
            "processes": args.processes,
            "ignore_eos": True,
            "temperature": 0,
            "cpus": cpu_text(args.client_cpus),
        },
        "server_cpus": cpu_text(args.server_cpus),
        "method": f"servers started one after the other and all kept up, pinned to cores the load client does not "
        f"use; both driven over /v1/completions; each cell (workload x concurrency) runs {args.rounds} rounds of one "
        "pass per server, the order alternating (A B B A A B ...; the first server alternating from cell to cell), "
        "each round on new prompts shared by the servers. Per cell and figure: the median of the rounds' ratios "
        "and a 95% Student-t interval on the mean of their logs (bench/paired.py); met: lower end >= "
        f"{FLOOR} and median >= 1.0 (TTFT: upper end <= 1/{FLOOR}, median <= 1.0). The offline engine ran alone "
        f"afterwards, {args.offline_repeats} timed runs of about {args.offline_seconds} s per workload (median).",
        "estimate": estimate,
    }
    try:
        with ClientPool(args.processes, args.client_cpus) as pool:
            maker: PromptMaker | None = None
            prompts: dict[tuple[str, int], list[list[str]]] = {}
            warmup: list[str] = []
            for name in names:  # one after the other: each profiles the GPU's memory alone
                if name == "ours_api":
                    servers[name] = Server(**{**servers["ours"].__dict__, "api": "ours"})
                    continue
                started = time.monotonic()
                server = servers[name] = start_server(name, args.model_dir, out.with_name(f"{name}.log"), args)
                if maker is None:  # the prompts are made on the client's cores while the first server starts
                    maker = PromptMaker(args.model_dir)
                    warmup = maker.make(WARMUP_REQUESTS, 256, seed=0)
                    for w_index, workload in enumerate(args.workloads):
                        for level in args.levels:  # one prompt set per round, the same for every server
                            count = requests[(workload.name, level)]
                            seeds = [
                                1_000_000 * (w_index + 1) + 1000 * rep + level for rep in range(1, args.rounds + 1)
                            ]
                            prompts[(workload.name, level)] = [
                                maker.make(count, workload.input_tokens, seed) for seed in seeds
                            ]
                    print(f"prompts made in {time.monotonic() - started:.0f} s", flush=True)
                wait_until(server.url + server.ready, server.process, server.log)
                startup[name] = round(time.monotonic() - started, 1)
                print(f"{name} ready after {startup[name]} s", flush=True)
                pool.run(server.api, server.url, warmup, 16, 64, model=server.model)
            report["startup_seconds"] = startup
            checked = check_engines({n: s for n, s in servers.items() if n != "ours_api"})
            report.update(
                engines=checked["engines"],
                kv_cache_tokens=checked["kv_cache_tokens"],
                kv_valid=checked["kv_valid"],
                engine_config=checked["config"],
            )
            differing = checked["config"]["differing"]
            print(f"KV cache tokens: {checked['kv_cache_tokens']} (within {KV_TOLERANCE:.0%}: {checked['kv_valid']})")
            for key, values in checked["config"]["only_in_some_logs"].items():
                print(f"warning: {key} found in only some logs: {values}")
            for name, missing in checked["config"]["unverified"].items():
                print(f"warning: {name}'s log does not show {missing}: the run cannot be marked valid")
            if differing:
                print("engine configurations differ:\n" + "\n".join(f"  {k}: {v}" for k, v in differing.items()))
                if not args.ignore_config_diff:
                    report["aborted"] = "engine configurations differ (see engine_config.differing)"
                    out.write_text(json.dumps(report, indent=2))
                    raise SystemExit(2)
            cell = 0
            for workload in args.workloads:
                for level in args.levels:

                    def run_pass(name: str, batch: list[str], level: int = level, workload: Workload = workload) -> Any:
                        server = servers[name]
                        return pool.run(
                            server.api, server.url, batch, level, workload.output_tokens, model=server.model
                        )

                    runs = run_cell(run_pass, names, args.rounds, cell, level, prompts[(workload.name, level)])
                    cell += 1
                    per_server, compared = cell_result(runs, level)
                    for name in names:
                        results[workload.name][name].append(per_server[name])
                        print(f"{name:>11} {workload.name} c={level:<4} {json.dumps(per_server[name])}", flush=True)
                    comparisons[workload.name][str(level)] = compared
                    for name, figures in compared.items():
                        print(
                            f"{name:>11} / vllm_serve {workload.name} c={level}: tok/s"
                            f" {describe(figures['output_tokens_per_s'])}, TTFT p50"
                            f" {describe(figures['ttft_p50_ms'])}",
                            flush=True,
                        )
            if args.vllm_bench_serve:
                for name, server in servers.items():
                    if server.api == "openai":
                        bench_serve[name] = vllm_bench_serve(
                            server, args.model_dir, args.vllm_bench_serve, args.workloads[0], out, name
                        )
                        print(f"vllm bench serve -> {name}: {json.dumps(bench_serve[name])}", flush=True)
            if args.py_spy and maker is not None:
                workload = args.workloads[0]
                for level in (int(x) for x in args.profile_levels.split(",")):
                    count = requests.get((workload.name, level), 1024)
                    extra = maker.make(count, workload.input_tokens, 9999 + level)
                    for name, server in servers.items():
                        if name != "ours_api":
                            profile_frontend(args.py_spy, name, server, level, extra, workload, args, pool)
    finally:
        for name, server in servers.items():
            if name != "ours_api":
                stop(server.process)
    if not args.no_offline and maker is not None:
        offline_workloads = {
            w.name: {
                "input_tokens": w.input_tokens,
                "output_tokens": w.output_tokens,
                "prompts": estimate["offline"][w.name]["prompts"],
                "repeats": args.offline_repeats,
                "seed": 7_000_000 + index,
            }
            for index, w in enumerate(args.workloads)
        }
        batched = report["engines"].get("vllm_serve", {}).get("effective", {}).get("max_num_batched_tokens")
        report["offline"] = run_offline(
            args, {"vocabulary": maker.vocabulary, "workloads": offline_workloads}, int(batched) if batched else None
        )
        print(f"offline engine: {json.dumps(report['offline'])}", flush=True)
    try:
        device = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        ).stdout.strip()
    except FileNotFoundError:  # vLLM's CPU build
        device = "no nvidia-smi"
    import vllm

    report.update(
        device=device,
        vllm=vllm.__version__,
        valid=bool(report["kv_valid"])
        and not report["engine_config"]["differing"]
        and not report["engine_config"]["unverified"],
        results=results,
        comparisons=comparisons,
        summary=summarize_comparisons(comparisons),
        vllm_bench_serve=bench_serve,
    )
    out.write_text(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
