"""This service on vLLM against `vllm serve`: same GPU, model, engine settings, prompts and load client.

Runs on the GPU machine (see bench/gpu/README.md). The servers start one after the other, the second once
the first is ready (two vLLM engines profiling GPU memory at once corrupt each other's KV-cache sizing), and
stay up (an idle one does not touch the GPU); each one's KV-cache capacity and scheduler settings are read
from its log, and a run whose capacities differ by more than 5% is marked invalid. Both servers are driven
over the same protocol, OpenAI's `/v1/completions` (streamed); this service's own `/api/generate/stream` is
measured beside it as `ours_api`. Each concurrency level (1/16/64/256, bench/gpu/load_client.py over several
client processes) runs A B B A over the servers, the first alternating by level, so none gains from the
order or from drift; every pass has new random prompts (prefix caching, on in all, cannot reuse them), the
same for all. Greedy decoding on the same engine, and every request generates exactly 128 tokens
(ignore_eos), so all do the same work. With --py-spy, each server's front-end process is sampled during an
extra, uncounted pass; with --vllm-bench-serve C, vLLM's own `vllm bench serve` (a client no one here wrote)
runs once against each server's /v1 at concurrency C.

    python bench/gpu/run_bench.py --model-dir DIR --out results.json [--levels 1,16,64,256]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from load_client import run_requests, summarize

ROOT = Path(__file__).resolve().parents[2]
INPUT_TOKENS, OUTPUT_TOKENS = 256, 128
REQUESTS = {1: 32, 16: 384, 64: 1024, 256: 1536}  # ~7+ s of steady state per level on an H200
OUR_PORT, VLLM_PORT = 8091, 8092
# The engine configuration both servers share (GPU.md's anchor run used the first two).
# Both servers are up at once, so each gets 0.4 of the GPU's memory (KV cache for far more than 256 x 384).
MAX_MODEL_LEN, GPU_MEMORY_UTILIZATION, MAX_NUM_SEQS = 2048, 0.4, 256


def make_prompts(model_dir: str, count: int, seed: int) -> list[str]:
    """Random-token prompts of INPUT_TOKENS tokens (as text), like vLLM's random dataset."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    special = set(tokenizer.all_special_ids)
    # no token that decodes to a NUL: this service refuses prompts containing one (422)
    vocabulary = [i for i in range(tokenizer.vocab_size) if i not in special and "\x00" not in tokenizer.decode([i])]
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        text = tokenizer.decode(rng.choices(vocabulary, k=INPUT_TOKENS))
        # decoding then encoding can merge tokens; trim back to the target length
        prompts.append(tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)[:INPUT_TOKENS]))
    return prompts


def start_ours(model_dir: str, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}",
        "LLM_BACKEND": "vllm",
        "LLM_ALLOWED_MODELS": model_dir,
        "LLM_INFERENCE_HOSTNAME": "127.0.0.1",
        "LLM_INFERENCE_PORT": str(OUR_PORT),
        "LLM_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "LLM_GPU_MEMORY_UTILIZATION": str(GPU_MEMORY_UTILIZATION),
        "LLM_MAX_CONCURRENT_REQUESTS": str(MAX_NUM_SEQS),
        "LLM_MAX_QUEUED_REQUESTS": "1024",
        "LLM_LOG_FORMAT": "json",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "llm_inference", "serve"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_vllm(model_dir: str, log: Path) -> subprocess.Popen[bytes]:
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
        str(MAX_MODEL_LEN),
        "--gpu-memory-utilization",
        str(GPU_MEMORY_UTILIZATION),
        "--max-num-seqs",
        str(MAX_NUM_SEQS),
    ]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    api: str  # the load client's API name: "openai" (/v1/completions) or "ours" (/api/generate/stream)
    ready: str  # the path answering 200 once it serves
    log: Path
    model: str  # the model name its /v1 answers to


def start_server(name: str, model_dir: str, log: Path) -> Server:
    if name == "ours":
        return Server(
            start_ours(model_dir, log), f"http://127.0.0.1:{OUR_PORT}", "openai", "/health/ready", log, model_dir
        )
    return Server(start_vllm(model_dir, log), f"http://127.0.0.1:{VLLM_PORT}", "openai", "/health", log, "bench")


# What each engine logs about itself; the run compares them (the KV cache must match for a valid run).
_ENGINE_LINES = {
    "kv_cache_tokens": r"GPU KV cache size: ([\d,]+) tokens",
    "max_num_batched_tokens": r"max_num_batched_tokens['\"]?[:=] ?(\d+)",
    "max_num_seqs": r"max_num_seqs['\"]?[:=] ?(\d+)",
    "enable_prefix_caching": r"enable_prefix_caching['\"]?[:=] ?(\w+)",
    "async_scheduling": r"async_scheduling['\"]?[:=] ?(\w+)",
    "cuda_graphs": r"cudagraph_mode['\"]?[:=] ?<?([\w.]+)",
    "enforce_eager": r"enforce_eager['\"]?[:=] ?(\w+)",
}


def engine_settings(log: Path) -> dict[str, Any]:
    text = log.read_text(errors="replace")
    found: dict[str, Any] = {}
    for key, pattern in _ENGINE_LINES.items():
        match = re.search(pattern, text)
        if match:
            found[key] = int(match[1].replace(",", "")) if match[1].replace(",", "").isdigit() else match[1]
    return found


def vllm_bench_serve(server: Server, model_dir: str, concurrency: int, out: Path, name: str) -> dict[str, Any]:
    """vLLM's own benchmark client against one server's /v1/completions: random 256/128 prompts, greedy."""
    prompts = REQUESTS.get(concurrency, 4 * concurrency)
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
        str(INPUT_TOKENS),
        "--random-output-len",
        str(OUTPUT_TOKENS),
        "--ignore-eos",
        "--num-prompts",
        str(prompts),
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


def wait_until(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 400) -> float:
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
    os.killpg(process.pid, signal.SIGTERM)
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
    py_spy: str, name: str, server: Server, level: int, prompts: list[str], processes: int, output: Path
) -> None:
    """An extra, uncounted pass with py-spy sampling the front end: it must not skew the measured levels."""
    sampler = subprocess.Popen(
        [
            py_spy,
            "record",
            "--format",
            "raw",
            "--nonblocking",
            "-r",
            "200",
            "-d",
            "10",
            "-p",
            str(frontend_pid(name, server.process)),
            "-o",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    run_requests(server.api, server.url, prompts, level, OUTPUT_TOKENS, processes, model=server.model)
    sampler.wait()


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| concurrency | server | output tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | tokens/request | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {"ours": "ours, /v1/completions", "ours_api": "ours, /api/generate/stream", "vllm_serve": "vllm serve"}
    for index, (ours, theirs) in enumerate(zip(results["ours"], results["vllm_serve"], strict=True)):
        rows = [(labels[name], results[name][index]) for name in labels if name in results]
        for name, r in rows:
            lines.append(
                f"| {r['concurrency']} | {name} | {r.get('output_tokens_per_s', 0):,.0f} | "
                f"{r.get('ttft_p50_ms')} / {r.get('ttft_p99_ms')} | {r.get('itl_p50_ms')} / "
                f"{r.get('itl_p99_ms')} | {r.get('mean_output_tokens')} | {r['errors']} |"
            )
        ratio = ours.get("output_tokens_per_s", 0) / max(theirs.get("output_tokens_per_s", 1), 1e-9)
        ttft = (ours.get("ttft_p50_ms") or 0) / max(theirs.get("ttft_p50_ms") or 1, 1e-9)
        lines.append(
            f"| {ours['concurrency']} | **ours / vllm serve** | **{ratio:.2f}×** | **{ttft:.2f}×** p50 | | | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True, help="results JSON path (logs are written beside it)")
    parser.add_argument("--levels", default="1,16,64,256")
    parser.add_argument("--processes", type=int, default=8, help="load client processes")
    parser.add_argument(
        "--servers",
        default="vllm_serve,ours,ours_api",
        help="in start order; ours_api is ours driven over /api/generate/stream",
    )
    parser.add_argument("--py-spy", help="path of py-spy: sample each server's front end during --profile-level")
    parser.add_argument("--profile-level", type=int, default=256)
    parser.add_argument(
        "--vllm-bench-serve",
        type=int,
        metavar="CONCURRENCY",
        help="also run `vllm bench serve` against each server's /v1 at this concurrency",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    out = Path(args.out)
    prompts: dict[Any, list[str]] = {0: make_prompts(args.model_dir, 32, seed=0)}
    if args.py_spy:
        prompts["profile"] = make_prompts(args.model_dir, REQUESTS.get(args.profile_level, 1024), seed=9999)
    for level in levels:  # two prompt sets per level: one for each pass on a server
        count = REQUESTS.get(level, 4 * level)
        prompts[level] = [make_prompts(args.model_dir, count, seed=1000 * rep + level) for rep in (1, 2)]
    names = args.servers.split(",")
    servers: dict[str, Server] = {}
    startup: dict[str, float] = {}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    bench_serve: dict[str, dict[str, Any]] = {}
    try:
        for name in names:  # one after the other: each profiles the GPU's memory alone
            if name == "ours_api":
                servers[name] = Server(**{**servers["ours"].__dict__, "api": "ours"})
                continue
            started = time.monotonic()
            server = servers[name] = start_server(name, args.model_dir, out.with_name(f"{name}.log"))
            wait_until(server.url + server.ready, server.process, server.log)
            startup[name] = round(time.monotonic() - started, 1)
            print(f"{name} ready after {startup[name]} s", flush=True)
            run_requests(server.api, server.url, prompts[0], 16, OUTPUT_TOKENS, args.processes, model=server.model)
        for index, level in enumerate(levels):
            # A B B A (the first server alternating by level), each pass with its own prompts: neither
            # server gains from going first or second, and no pass reuses a prompt the server has cached.
            order = names if index % 2 == 0 else names[::-1]
            runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in names}
            for name in [*order, *order[::-1]]:
                server = servers[name]
                batch = prompts[level][len(runs[name])]
                runs[name].append(
                    run_requests(
                        server.api, server.url, batch, level, OUTPUT_TOKENS, args.processes, model=server.model
                    )
                )
            for name in names:
                result = summarize(runs[name], level)
                print(f"{name:>11} c={level:<4} {json.dumps(result)}", flush=True)
                results[name].append(result)
        if args.vllm_bench_serve:
            for name, server in servers.items():
                if server.api == "openai":
                    bench_serve[name] = vllm_bench_serve(server, args.model_dir, args.vllm_bench_serve, out, name)
                    print(f"vllm bench serve -> {name}: {json.dumps(bench_serve[name])}", flush=True)
        if args.py_spy:
            for name, server in servers.items():
                if name == "ours_api":
                    continue
                output = out.with_name(f"{name}-c{args.profile_level}.pyspy.txt")
                profile_frontend(
                    args.py_spy, name, server, args.profile_level, prompts["profile"], args.processes, output
                )
    finally:
        for name, server in servers.items():
            if name != "ours_api":
                stop(server.process)
    engines = {name: engine_settings(server.log) for name, server in servers.items() if name != "ours_api"}
    capacities = [e.get("kv_cache_tokens") for e in engines.values()]
    valid = None not in capacities and max(capacities) <= 1.05 * min(capacities)  # type: ignore[type-var]
    differing = sorted(
        k
        for k in set().union(*engines.values())
        if k != "kv_cache_tokens" and len({str(e.get(k)) for e in engines.values()}) > 1
    )
    device = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
    ).stdout.strip()
    import vllm

    report = {
        "date": datetime.date.today().isoformat(),
        "device": device,
        "vllm": vllm.__version__,
        "model": "SmolLM2-135M-Instruct (bf16, converted from the embedded GGUF)",
        "workload": {
            "input_tokens": INPUT_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
            "ignore_eos": True,
            "temperature": 0,
            "requests": {str(k): REQUESTS.get(k, 4 * k) for k in levels},
            "client_processes": args.processes,
        },
        "engine": {
            "max_model_len": MAX_MODEL_LEN,
            "gpu_memory_utilization": GPU_MEMORY_UTILIZATION,
            "max_num_seqs": MAX_NUM_SEQS,
            "prefix_caching": "default (on) in both, new prompts for every pass",
        },
        "method": "servers started one after the other and all kept up; both driven over /v1/completions "
        "(ours_api: this service over /api/generate/stream); each level runs A B B A over the "
        "servers (first alternating by level), each pass with new prompts; a server's figures "
        "combine its two passes",
        "startup_seconds": startup,
        "engines": engines,
        "valid": valid,
        "engine_settings_differing": differing,
        "results": results,
        "vllm_bench_serve": bench_serve,
    }
    out.write_text(json.dumps(report, indent=2))
    if "ours" in results and "vllm_serve" in results:
        print(table(results))
    print(f"KV cache tokens: {capacities}; valid run: {valid}; engine settings differing: {differing or 'none'}")


if __name__ == "__main__":
    main()
