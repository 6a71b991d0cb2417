"""vLLM's offline engine (`LLM.generate`) on a benchmark's prompts: the output tok/s a server can approach.

Run by run_bench.py in its own process once both servers have stopped (nothing else on the GPU; the process
exits, so its GPU memory is freed), with the servers' engine settings, max_num_batched_tokens included (the
`LLM` class would otherwise pick 16384 where the servers run 8192).

    python bench/gpu/offline_limit.py --model-dir DIR --prompts prompts.json --out offline.json \
        [--max-model-len 2048 --gpu-memory-utilization 0.4 --max-num-seqs 256 --tensor-parallel-size 1
         --max-num-batched-tokens 8192]

prompts.json: {"256x128": {"output_tokens": 128, "prompts": [...], "warmup": [...]}, ...}; the result has one entry per workload.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def measure(llm: Any, prompts: list[str], output_tokens: int) -> dict[str, Any]:
    from vllm import SamplingParams

    # greedy, exactly output_tokens per request, as the servers are driven
    params = SamplingParams(temperature=0, max_tokens=output_tokens, ignore_eos=True)
    started = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(output.outputs[0].token_ids) for output in outputs)
    return {
        "prompts": len(prompts),
        "output_tokens": tokens,
        "seconds": round(seconds, 3),
        "output_tokens_per_s": round(tokens / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--prompts", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-num-batched-tokens", type=int, default=None)
    args = parser.parse_args()
    workloads = json.loads(args.prompts.read_text())
    from vllm import LLM

    started = time.monotonic()
    llm = LLM(
        model=args.model_dir,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_num_seqs=args.max_num_seqs,
        tensor_parallel_size=args.tensor_parallel_size,
        max_num_batched_tokens=args.max_num_batched_tokens,
    )
    report: dict[str, Any] = {"startup_seconds": round(time.monotonic() - started, 1), "workloads": {}}
    for name, workload in workloads.items():
        # a short uncounted warm-up on other prompts first (first-call costs, as the servers had theirs)
        measure(llm, workload["warmup"], 16)
        report["workloads"][name] = measure(llm, workload["prompts"], workload["output_tokens"])
        print(f"offline {name}: {json.dumps(report['workloads'][name])}", flush=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
