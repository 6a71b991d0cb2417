"""What constrained decoding costs on the running service: the same extraction requests on /v1/chat/completions
with a `response_format` json_schema and without, at 1 and 16 concurrent clients, against one Granian process
serving the embedded model (SmolLM2-135M-Instruct Q4_1 on llama.cpp).

Both variants ask for the same JSON in the prompt (so the unconstrained model writes comparable text) with the
same max_tokens, temperature 0 and EOS honoured (a constraint cannot be combined with ignore_eos), so outputs
end where the model (or the schema) ends them: tokens are the completion_tokens of each stream's usage, never
max_tokens. Passes alternate between the variants, A B B A A B ..., at each concurrency, against the same
server, so drift and other work on the machine hit both; every pass has its own prompts (no prefix-cache hit
from the other variant's pass). Each figure is the median of the passes, with the lowest and highest pass;
the cost is the median of the per-pass ratios (a pass against its neighbour of the other variant), with their
lowest and highest. Prints a table, writes bench/results/structured-speed-<date>.json and .png.

    make bench-structured                 # or: .venv/bin/python -m bench.structured_speed --passes 6
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import Dialect, RequestResult, percentile, run_requests
from bench.machine import cpu_model
from bench.servers import RunningServer, ServerSpec, free_port

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m-instruct"
TAGS = ["customer", "employee", "vip", "new", "returning", "partner"]
# An extraction schema as an application would send it: bounded strings, an integer, an array of enum strings.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "city": {"type": "string", "maxLength": 30},
        "occupation": {"type": "string", "maxLength": 30},
        "tags": {"type": "array", "items": {"enum": TAGS}, "maxItems": 4},
    },
    "required": ["name", "age", "city", "occupation", "tags"],
    "additionalProperties": False,
}
INSTRUCTION = (
    "Extract the person described below as a JSON object with the keys name (string), age (integer), city "
    f"(string), occupation (string) and tags (a list drawn from {', '.join(TAGS)}). Answer with the JSON only."
    "\n\nText: "
)
VARIANTS = {
    "unconstrained": Dialect(
        "/v1/chat/completions", ignore_eos=False, extra={"model": MODEL, "stream_options": {"include_usage": True}}
    ),
    "json_schema": Dialect(
        "/v1/chat/completions",
        ignore_eos=False,
        extra={
            "model": MODEL,
            "stream_options": {"include_usage": True},
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "person", "strict": True, "schema": SCHEMA},
            },
        },
    ),
}
METRICS = (
    "client_tokens_per_second",
    "output_tokens_per_second",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "completion_tokens_mean",
)
# Costs as "how much worse constrained is": tok/s lost, latency added (per-pass ratio - 1, in %).
COSTS = {
    "client_tokens_per_second": "lower",
    "output_tokens_per_second": "lower",
    "ttft_p50_ms": "higher",
    "itl_p50_ms": "higher",
    "itl_p99_ms": "higher",
}
FIRST = ["Maria", "Tom", "Aiko", "Jonas", "Fatima", "Lucas", "Priya", "Olga", "Samuel", "Chen", "Ines", "Kofi"]
LAST = ["Lopez", "Becker", "Tanaka", "Novak", "Haddad", "Silva", "Sharma", "Ivanova", "Okafor", "Wang", "Rossi"]
CITIES = ["Valencia", "Hamburg", "Osaka", "Prague", "Casablanca", "Porto", "Pune", "Kazan", "Lagos", "Lyon"]
JOBS = ["nurse", "pilot", "teacher", "baker", "software engineer", "architect", "farmer", "lawyer", "chef"]
SENTENCES = [
    "{name}, {age}, works as a {job} in {city}. {extra}",
    "{name} is a {age}-year-old {job} from {city}. {extra}",
    "Our records show {name} ({age}) living in {city} and working as a {job}. {extra}",
]
EXTRAS = [
    "She has been a loyal customer since 2019 and joined the VIP program last spring.",
    "He signed up as a new partner of our travel agency this month.",
    "They came back to the shop twice this year after a long break.",
    "An employee of ours for six years, recently promoted.",
    "First order placed last week; asked about the loyalty card.",
]


def make_prompts(count: int, seed: int) -> list[str]:
    """Distinct descriptions after one shared instruction (as an extraction service sends them)."""
    rng = random.Random(seed)
    return [
        INSTRUCTION
        + rng.choice(SENTENCES).format(
            name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            age=rng.randint(18, 90),
            job=rng.choice(JOBS),
            city=rng.choice(CITIES),
            extra=rng.choice(EXTRAS),
        )
        for _ in range(count)
    ]


def matches_schema(text: str) -> bool:
    """This bench's schema, checked by hand (no validator dependency)."""
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if not isinstance(value, dict) or set(value) != set(SCHEMA["required"]):
        return False
    strings_ok = all(
        isinstance(value[k], str) and len(value[k]) <= SCHEMA["properties"][k]["maxLength"]
        for k in ("name", "city", "occupation")
    )
    age, tags = value["age"], value["tags"]
    tags_ok = isinstance(tags, list) and len(tags) <= 4 and all(t in TAGS for t in tags)
    return strings_ok and isinstance(age, int) and not isinstance(age, bool) and tags_ok


def summarize(results: list[RequestResult], wall: float) -> dict[str, Any]:
    good = [r for r in results if r.ok]
    # Actual tokens: the usage's completion_tokens (each streamed chunk is one token here; the count is kept).
    tokens = [r.completion_tokens or r.output_chunks for r in good]
    ttfts = sorted(r.time_to_first_token for r in good)
    gaps = sorted(g for r in good for g in r.inter_token_latencies)
    # What one client sees once its stream has started (TTFT is its own column): the tokens after the first over
    # the time from the first to the last.
    rates = [
        (n - 1) / sum(r.inter_token_latencies)
        for n, r in zip(tokens, good, strict=True)
        if n > 1 and sum(r.inter_token_latencies) > 0
    ]
    return {
        "requests": len(results),
        "failed": len(results) - len(good),
        "errors": sorted({r.error for r in results if not r.ok})[:3],
        "completion_tokens_mean": statistics.mean(tokens) if tokens else 0.0,
        "chunks_mean": statistics.mean(r.output_chunks for r in good) if good else 0.0,
        "finished_stop": sum(r.finish_reason == "stop" for r in good),
        "matches_schema": sum(matches_schema(r.text) for r in good),
        "client_tokens_per_second": statistics.median(rates) if rates else 0.0,
        "output_tokens_per_second": sum(tokens) / wall,  # all clients together
        "ttft_p50_ms": percentile(ttfts, 0.5) * 1000,
        "ttft_p99_ms": percentile(ttfts, 0.99) * 1000,
        "itl_p50_ms": percentile(gaps, 0.5) * 1000,
        "itl_p99_ms": percentile(gaps, 0.99) * 1000,
        "wall_seconds": wall,
        "sample_output": good[0].text if good else "",
    }


def gpu_model() -> str:
    try:
        import torch

        return str(torch.cuda.get_device_name(0))
    except Exception:
        return "unknown GPU"


def constraint_metrics(url: str) -> dict[str, float]:
    """The server's own count of constrained requests and compile time (docs/observability.md "Metrics")."""
    text = httpx.get(url + "/metrics", timeout=10).text
    wanted = (
        "llm_constrained_requests_total",
        "llm_constraint_compile_seconds_sum",
        "llm_constraint_compile_seconds_count",
    )
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def aggregate(passes: dict[str, dict[int, list[dict[str, Any]]]], levels: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for variant, by_level in passes.items():
        summary[variant] = {}
        for level in levels:
            runs = by_level[level]
            summary[variant][level] = {
                m: {
                    "median": statistics.median(r[m] for r in runs),
                    "min": min(r[m] for r in runs),
                    "max": max(r[m] for r in runs),
                }
                for m in METRICS
            }
            summary[variant][level]["requests"] = sum(r["requests"] for r in runs)
            summary[variant][level]["failed"] = sum(r["failed"] for r in runs)
            summary[variant][level]["finished_stop"] = sum(r["finished_stop"] for r in runs)
            summary[variant][level]["matches_schema"] = sum(r["matches_schema"] for r in runs)
    return summary


def costs(passes: dict[str, dict[int, list[dict[str, Any]]]], levels: list[int]) -> dict[int, dict[str, Any]]:
    """Per pass i: json_schema's pass i against unconstrained's pass i (neighbours in the A B B A order)."""
    out: dict[int, dict[str, Any]] = {}
    for level in levels:
        pairs = list(zip(passes["unconstrained"][level], passes["json_schema"][level], strict=True))
        out[level] = {}
        for metric, worse in COSTS.items():
            if worse == "lower":
                per_pass = [100 * (1 - c[metric] / u[metric]) for u, c in pairs]
            else:
                per_pass = [100 * (c[metric] / u[metric] - 1) for u, c in pairs]
            out[level][metric] = {
                "median_percent": statistics.median(per_pass),
                "min_percent": min(per_pass),
                "max_percent": max(per_pass),
                "per_pass_percent": per_pass,
            }
    return out


def print_table(summary: dict[str, Any], cost: dict[int, dict[str, Any]], levels: list[int]) -> None:
    def cell(figure: dict[str, float], fmt: str) -> str:
        return f"{figure['median']:{fmt}} ({figure['min']:{fmt}}-{figure['max']:{fmt}})"

    print(
        f"\n{'variant':14} {'c':>2} {'tok/s per client':>22} {'tok/s all clients':>23} {'TTFT p50 ms':>17} "
        f"{'TTFT p99 ms':>17} {'ITL p50 ms':>19} {'ITL p99 ms':>19} {'tok/req':>7} {'stop':>7} {'valid':>7}"
    )
    for level in levels:
        for variant in VARIANTS:
            row = summary[variant][level]
            n = row["requests"] - row["failed"]
            print(
                f"{variant:14} {level:>2} {cell(row['client_tokens_per_second'], '6.1f'):>22} "
                f"{cell(row['output_tokens_per_second'], '6.1f'):>23} {cell(row['ttft_p50_ms'], '4.0f'):>17} "
                f"{cell(row['ttft_p99_ms'], '4.0f'):>17} {cell(row['itl_p50_ms'], '5.1f'):>19} "
                f"{cell(row['itl_p99_ms'], '5.1f'):>19} {row['completion_tokens_mean']['median']:7.1f} "
                f"{row['finished_stop']:>3}/{n:<3} {row['matches_schema']:>3}/{n:<3}"
            )
    print("\ncost of json_schema (median of per-pass ratios, lowest-highest pass; + is worse):")
    for level in levels:
        parts = [
            f"{metric.removesuffix('_ms')} {c['median_percent']:+.1f}% ({c['min_percent']:+.1f}..{c['max_percent']:+.1f})"
            for metric, c in cost[level].items()
        ]
        print(f"  c={level:<3} " + "   ".join(parts))


def plot(summary: dict[str, Any], levels: list[int], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("client_tokens_per_second", "tok/s per client"),
        ("output_tokens_per_second", "tok/s, all clients"),
        ("itl_p50_ms", "ITL p50 (ms)"),
        ("itl_p99_ms", "ITL p99 (ms)"),
        ("ttft_p50_ms", "TTFT p50 (ms)"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.8))
    width = 0.38
    for axis, (metric, label) in zip(axes, panels, strict=True):
        for i, variant in enumerate(VARIANTS):
            rows = [summary[variant][level][metric] for level in levels]
            medians = [r["median"] for r in rows]
            errors = [[r["median"] - r["min"] for r in rows], [r["max"] - r["median"] for r in rows]]
            xs = [x + (i - 0.5) * width for x in range(len(levels))]
            axis.bar(xs, medians, width, yerr=errors, capsize=3, label=variant)
        axis.set_xticks(range(len(levels)), [f"{level} client{'s' if level > 1 else ''}" for level in levels])
        axis.set_title(label, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title + "  (bars: median of passes; whiskers: lowest-highest pass)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


async def run_pass(
    url: str, variant: str, level: int, requests_per_client: int, max_tokens: int, seed: int
) -> dict[str, Any]:
    prompts = make_prompts(max(level * requests_per_client, 4), seed)
    results, wall = await run_requests(url, VARIANTS[variant], prompts, level, max_tokens)
    return summarize(results, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=6, help="passes per variant and concurrency (even: A B B A)")
    parser.add_argument("--levels", default="1,16")
    parser.add_argument("--requests-per-client", type=int, default=3, help="requests each client sends per pass")
    # Room for the whole constrained answer (~50 tokens); the unconstrained model pretty-prints (~70) or runs on, so a
    # cap near the constrained length keeps both variants' requests (and so their prefills) about as frequent.
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--budget-seconds", type=float, default=1800, help="start no new pair of passes after this")
    parser.add_argument("--tag", help="suffix of the result files: structured-speed-<date>-<tag>.json")
    parser.add_argument(
        "--vllm-model-dir",
        help="serve this Hugging Face folder on vLLM instead of the embedded GGUF on llama.cpp (the GPU run: "
        "vLLM's structured outputs, xgrammar)",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    slots = max(levels)
    env = {
        "LLM_INFERENCE_HOSTNAME": "127.0.0.1",
        "LLM_INFERENCE_PORT": "{port}",
        "LLM_THREADS": str(args.threads),
        "LLM_MAX_CONCURRENT_REQUESTS": str(slots),
        "LLM_CONTEXT_LENGTH": "512",
        "LLM_LOG_LEVEL": "WARNING",
    }
    engine = "SmolLM2-135M Q4_1 on llama.cpp"
    if args.vllm_model_dir:
        env = {k: v for k, v in env.items() if k not in ("LLM_THREADS", "LLM_CONTEXT_LENGTH")}
        env |= {
            "LLM_BACKEND": "vllm",
            "LLM_ALLOWED_MODELS": args.vllm_model_dir,
            "LLM_MAX_MODEL_LEN": "2048",
            "LLM_GPU_MEMORY_UTILIZATION": "0.5",
        }
        for dialect in VARIANTS.values():
            dialect.extra["model"] = args.vllm_model_dir
        engine = "SmolLM2-135M bf16 on vLLM"
    spec = ServerSpec("llm-inference", [sys.executable, "-m", "llm_inference", "serve"], "/health/ready", env)
    load_at_start = os.getloadavg()  # other work on the machine: the figures are only as calm as it was
    started = time.monotonic()
    passes: dict[str, dict[int, list[dict[str, Any]]]] = {v: {level: [] for level in levels} for v in VARIANTS}
    stopped = ""  # why the passes stopped before --passes, if they did
    server = RunningServer(spec, free_port(), RESULTS / "logs")
    try:
        server.wait_ready()
        for variant in VARIANTS:  # warm-up: the schema's grammar compiled and cached, first requests' costs paid
            asyncio.run(run_pass(server.url, variant, 2, 1, 16, seed=-1))
        for pass_index in range(args.passes):
            if pass_index % 2 == 0 and pass_index and time.monotonic() - started > args.budget_seconds:
                stopped = f"budget of {args.budget_seconds:.0f}s spent after {pass_index} passes"
                print(stopped, flush=True)
                break
            order = list(VARIANTS) if pass_index % 2 == 0 else list(reversed(VARIANTS))
            this_pass: list[tuple[str, int, dict[str, Any]]] = []
            for level in levels:
                for variant in order:
                    seed = (pass_index * 100 + level) * 2 + (variant == "json_schema")
                    row = asyncio.run(
                        run_pass(server.url, variant, level, args.requests_per_client, args.max_tokens, seed)
                    )
                    this_pass.append((variant, level, row))
                    print(
                        f"pass {pass_index + 1}/{args.passes} c={level:<2} {variant:13} "
                        f"{row['client_tokens_per_second']:6.1f} tok/s/client {row['output_tokens_per_second']:6.1f} "
                        f"tok/s  ITL p50 {row['itl_p50_ms']:5.1f} ms  {row['completion_tokens_mean']:5.1f} tok/req  "
                        f"failed {row['failed']}",
                        flush=True,
                    )
            # A pass counts whole or not at all, so that every figure of one variant has its neighbour of the other.
            if server.process.poll() is not None or any(row["failed"] == row["requests"] for _, _, row in this_pass):
                stopped = f"pass {pass_index + 1} lost (server exited with {server.process.poll()} or no answer)"
                print(stopped + f": keeping the {pass_index} passes before it", flush=True)
                break
            for variant, level, row in this_pass:
                passes[variant][level].append(row)
        server_metrics: dict[str, Any]
        try:
            server_metrics = constraint_metrics(server.url)
        except httpx.HTTPError as exc:
            server_metrics = {"unavailable": str(exc)}
    finally:
        server.stop()
    load_at_end = os.getloadavg()
    if not passes["unconstrained"][levels[0]]:
        sys.exit(f"no whole pass to report ({stopped})")
    summary, cost = aggregate(passes, levels), costs(passes, levels)
    print_table(summary, cost, levels)
    cpu = cpu_model() if not args.vllm_model_dir else f"{gpu_model()} (client and server on {cpu_model()})"
    top = max(levels)
    slowdown = cost[top]["client_tokens_per_second"]
    # Met only if every pass is within it; missed only if every pass is past it; otherwise the spread decides nothing.
    verdict = "met" if slowdown["max_percent"] <= 10 else "missed" if slowdown["min_percent"] > 10 else "inconclusive"
    print(
        f"\nCPU: {cpu} ({os.cpu_count()} cores); load average (1 min) at start {load_at_start[0]:.2f}, at end "
        f"{load_at_end[0]:.2f}\ntarget (<= 10% slower per client at {top} clients): {verdict}: "
        f"{slowdown['median_percent']:+.1f}% ({slowdown['min_percent']:+.1f}..{slowdown['max_percent']:+.1f})"
    )
    stamp = datetime.date.today().isoformat()
    name = f"structured-speed-{stamp}-{args.tag}" if args.tag else f"structured-speed-{stamp}"
    result = {
        "date": stamp,
        "machine": {
            "cpu": cpu,
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": load_at_end,
        },
        "settings": {**vars(args), "temperature": 0, "endpoint": "/v1/chat/completions", "slots": slots},
        "schema": SCHEMA,
        "instruction": INSTRUCTION,
        "method": "passes alternate A B B A per concurrency against one server process; each figure: median of "
        "the passes [min, max of the passes]; percentiles are nearest-rank over all requests (TTFT) or all "
        "token gaps (ITL) of a pass; tok/s per client: median over a pass's requests of (completion_tokens "
        "- 1) / (last token's arrival - first token's arrival), i.e. after TTFT; tok/s all clients: a pass's completion_tokens / its wall time; cost: "
        "median [min, max] over passes of the ratio of pass i of json_schema to pass i of unconstrained",
        "target": {
            "metric": f"client_tokens_per_second at {top} clients",
            "max_slowdown_percent": 10,
            "verdict": verdict,  # met: every pass within; missed: every pass past; else inconclusive
        },
        "summary": summary,
        "cost_percent": cost,
        "server_metrics": server_metrics,
        "passes": passes,
        "stopped_early": stopped,
        "elapsed_seconds": time.monotonic() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot(
        summary,
        levels,
        f"json_schema vs unconstrained, {engine}, {cpu} x{os.cpu_count()}, LLM_THREADS={args.threads}, "
        f"load {load_at_start[0]:.1f}/{load_at_end[0]:.1f}",
        RESULTS / f"{name}.png",
    )
    print(f"\nwrote {RESULTS / f'{name}.json'} and .png")


if __name__ == "__main__":
    main()
