"""vLLM's offline engine (`LLM.generate`) on a benchmark's shapes: the output tok/s a server can approach.

Run by run_bench.py in its own process once both servers have stopped (nothing else on the GPU; the process
exits, so its GPU memory is freed), on the servers' cores, with the servers' engine settings,
max_num_batched_tokens included (the `LLM` class would otherwise pick 16384 where the servers run 8192). Each
workload's run is sized by run_bench.py (about --offline-seconds, at least three batches of max_num_seqs) and
timed `repeats` times on new random-token prompts (token ids: nothing to tokenize), after a warm-up; its figure
is the median.

    python bench/gpu/offline_limit.py --model-dir DIR --prompts prompts.json --out offline.json \
        [--max-model-len 2048 --gpu-memory-utilization 0.4 --max-num-seqs 256 --tensor-parallel-size 1
         --max-num-batched-tokens 8192]

prompts.json: {"vocabulary": [token ids to draw from], "workloads": {"256x128": {"input_tokens": 256,
"output_tokens": 128, "prompts": 1219, "repeats": 2, "seed": 7000000}, ...}}; the result has one entry per workload.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any


def token_prompts(vocabulary: list[int], count: int, length: int, seed: int) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    return [{"prompt_token_ids": rng.choices(vocabulary, k=length)} for _ in range(count)]


def measure(llm: Any, prompts: list[Any], output_tokens: int) -> dict[str, Any]:
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
    plan = json.loads(args.prompts.read_text())
    vocabulary: list[int] = plan["vocabulary"]
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
    for name, workload in plan["workloads"].items():
        length, output_tokens, seed = workload["input_tokens"], workload["output_tokens"], workload["seed"]
        # a short uncounted warm-up on other prompts first (first-call costs, as the servers had theirs)
        measure(llm, token_prompts(vocabulary, 16, length, seed - 1), 16)
        runs = [
            measure(llm, token_prompts(vocabulary, workload["prompts"], length, seed + 1000 * rep), output_tokens)
            for rep in range(workload["repeats"])
        ]
        rates = [run["output_tokens_per_s"] for run in runs]
        report["workloads"][name] = {
            "prompts": workload["prompts"],
            "runs": runs,
            "output_tokens_per_s": statistics.median(rates),
            "spread": round((max(rates) - min(rates)) / statistics.median(rates), 4),
        }
        print(f"offline {name}: {json.dumps(report['workloads'][name])}", flush=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
