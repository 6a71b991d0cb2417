"""A GGUF model on the GPU: this service on llama.cpp built with CUDA, all layers offloaded, against the same
build with LLM_GPU_LAYERS=0 (the CPU path a GPU node had before), on the embedded SmolLM2 Q4_1 GGUF.

Run on the lent GPU machine after bench/gpu/build_llama_cuda.sh (llama-cpp-python with CUDA in /tmp/llcuda):

    python3 bench/gpu/gguf_on_gpu.py --gguf /tmp/pay/SmolLM2-135M-Instruct.Q4_1.gguf --out $OUT/gguf-gpu.json

For each placement it starts the service (LLM_BACKEND=auto, which picks llama.cpp for a GGUF file), records
what the engine reported at load (GPU offload, layers), a greedy answer, and streams 256-token-ish prompts
with 128 output tokens at each concurrency level through bench/gpu/load_client.py (/api/generate/stream).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from run_bench import launch, wait_until  # bench/gpu is the script's directory, so on sys.path

ROOT = Path(__file__).resolve().parents[2]
PORT = 8093
WORDS = [
    "river",
    "stone",
    "cloud",
    "garden",
    "window",
    "market",
    "silver",
    "morning",
    "engine",
    "harbor",
    "letter",
    "forest",
    "lamp",
    "bridge",
]


def prompts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(200)) for _ in range(count)]


def start(gguf: str, log: Path, slots: int, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": f"/tmp/llcuda:{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}",
        "LLM_BACKEND": "auto",
        "LLM_ALLOWED_MODELS": gguf,
        "LLM_INFERENCE_HOSTNAME": "127.0.0.1",
        "LLM_INFERENCE_PORT": str(PORT),
        "LLM_CONTEXT_LENGTH": "1024",
        "LLM_MAX_CONCURRENT_REQUESTS": str(slots),
        "LLM_MAX_QUEUED_REQUESTS": "1024",
        **extra,
    }
    return launch([sys.executable, "-m", "llm_inference", "serve"], log, env)


def loaded_line(log: Path) -> dict[str, Any]:
    for line in log.read_text().splitlines():
        if "llama.cpp model loaded" in line:
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                return {"line": line}
    return {}


def run_level(concurrency: int, requests: int, seed: int, workdir: Path) -> dict[str, Any]:
    file = workdir / f"prompts-{concurrency}-{seed}.json"
    file.write_text(json.dumps(prompts(requests, seed)))
    command = [sys.executable, str(ROOT / "bench/gpu/load_client.py"), "--api", "ours"]
    command += ["--url", f"http://127.0.0.1:{PORT}", "--prompts", str(file), "--concurrency", str(concurrency)]
    command += ["--max-tokens", "128", "--processes", str(min(8, concurrency))]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(name: str, gguf: str, levels: list[int], workdir: Path, **extra: str) -> dict[str, Any]:
    log = workdir / f"{name}.log"
    process = start(gguf, log, slots=max(levels), **extra)
    try:
        ready = wait_until(f"http://127.0.0.1:{PORT}/health/ready", process, log, timeout=240)
        answer = httpx.post(
            f"http://127.0.0.1:{PORT}/api/generate",
            json={"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0},
            timeout=60,
        ).json()
        result: dict[str, Any] = {"ready_seconds": round(ready, 1), "loaded": loaded_line(log)}
        result["greedy_answer"] = answer.get("text", answer)
        result["levels"] = {str(c): run_level(c, requests=max(8, c * 4), seed=c, workdir=workdir) for c in levels}
        return result
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--cpu-threads", default=str(os.cpu_count() or 1))
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    out = Path(args.out)
    workdir = out.parent
    results = {
        "gpu": measure("gguf-gpu", args.gguf, levels, workdir),
        "cpu": measure("gguf-cpu", args.gguf, levels, workdir, LLM_GPU_LAYERS="0", LLM_THREADS=args.cpu_threads),
    }
    out.write_text(json.dumps(results, indent=2))
    print(f"{'placement':<10}{'level':>6}{'tok/s':>10}{'TTFT p50 ms':>13}{'ITL p50 ms':>12}")
    for name, result in results.items():
        for level, summary in result["levels"].items():
            print(
                f"{name:<10}{level:>6}{summary.get('output_tokens_per_s', 0):>10.0f}"
                f"{summary.get('ttft_p50_ms', 0):>13.1f}{summary.get('itl_p50_ms', 0):>12.2f}"
            )


if __name__ == "__main__":
    main()
