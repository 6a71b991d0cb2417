"""How long tokenizing a prompt stops the event loop that carries every stream's tokens (the vLLM path).

The front end encodes each prompt with the model's Hugging Face tokenizer. On the event loop, every other
stream waits for it; in a worker thread the Rust encoder releases the GIL and the loop keeps turning. This
encodes prompts of several lengths both ways while a ticker task measures the gaps between the loop's turns,
and says which way `VllmEngine.tokenize` takes for each length (engines/vllm.py, INLINE_TOKENIZE_CHARS).

    .venv-vllm/bin/python -m bench.tokenize_stall --model-dir ~/.cache/llm-inference/smollm2-135m-instruct-hf
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from llm_inference.engines.vllm import INLINE_TOKENIZE_CHARS

RESULTS = Path(__file__).parent / "results"


async def measure(encode: Any, text: str, prompts: int, in_thread: bool) -> dict[str, float]:
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0)
            gaps.append(time.perf_counter() - start)

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    for _ in range(prompts):
        if in_thread:
            await asyncio.to_thread(encode, text)
        else:
            encode(text)
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    done.set()
    await task
    gaps.sort()
    return {
        "us_per_prompt": elapsed / prompts * 1e6,
        "loop_turns": len(gaps),
        "gap_p99_ms": gaps[int(len(gaps) * 0.99)] * 1e3,
        "gap_max_ms": gaps[-1] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a Hugging Face model folder (its tokenizer is used)")
    parser.add_argument("--lengths", default="16,64,256,1024", help="prompt lengths in tokens")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS / "tokenize-stall.json"))
    args = parser.parse_args()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    rng = random.Random(0)
    rows = []
    print("| tokens | chars | service encodes | way | us / prompt | loop turns | gap p99 ms | gap max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for length in (int(x) for x in args.lengths.split(",")):
        text = tokenizer.decode([rng.randrange(100, tokenizer.vocab_size) for _ in range(length)])
        service_way = "inline" if len(text) <= INLINE_TOKENIZE_CHARS else "thread"
        for way in ("inline", "thread"):
            figures = asyncio.run(measure(tokenizer.encode, text, args.prompts, way == "thread"))
            rows.append({"tokens": length, "chars": len(text), "service_way": service_way, "way": way, **figures})
            print(
                f"| {length} | {len(text)} | {service_way} | {way} | {figures['us_per_prompt']:.0f} | "
                f"{figures['loop_turns']} | {figures['gap_p99_ms']:.3f} | {figures['gap_max_ms']:.2f} |"
            )
    summary = {"inline_tokenize_chars": INLINE_TOKENIZE_CHARS, "prompts": args.prompts, "rows": rows}
    summary["median_thread_hop_us"] = statistics.median(
        r["us_per_prompt"] - i["us_per_prompt"] for r, i in zip(rows[1::2], rows[0::2], strict=True)
    )
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
