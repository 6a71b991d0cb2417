"""In-situ quantization on llama.cpp: what each LLM_ISQ_TYPE makes of the embedded model (SmolLM2-135M Q4_1).

For each type: the time to quantize (hash included) into an empty cache, the file's size, the time of a cache
hit (the source's hash only), and the greedy answer to a factual question beside the source's own.

    .venv/bin/python -m bench.isq [--types Q8_0 Q4_K_M ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

from llm_inference.engines.base import ChatMessage, GenerationRequest, SamplingParams
from llm_inference.engines.config import LlamaCppConfig
from llm_inference.engines.llamacpp.engine import LlamaCppEngine
from llm_inference.engines.llamacpp.quantize import quantized_model
from llm_inference.model_spec import embedded_model_path

RESULTS = Path(__file__).parent / "results"
TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "Q3_K_M", "Q3_K_S", "Q2_K"]
QUESTION = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "What is the capital of France?"),
]


async def greedy_answer(path: Path, threads: int) -> str:
    config = LlamaCppConfig(slots=1, context_length=512, threads=threads)
    engine = await LlamaCppEngine.load(path, config=config)
    try:
        prompt = await engine.render_chat(QUESTION)
        sampling = SamplingParams(max_tokens=16, temperature=0, top_p=1)
        request = GenerationRequest(request_id=uuid.uuid4().hex, prompt=prompt, sampling=sampling)
        return "".join([chunk.text async for chunk in engine.generate(request)])
    finally:
        await engine.aclose()


def common_prefix_words(a: str, b: str) -> int:
    count = 0
    for x, y in zip(a.split(), b.split(), strict=False):
        if x != y:
            break
        count += 1
    return count


async def run(types: list[str], threads: int) -> dict[str, object]:
    source = embedded_model_path()
    source_answer = await greedy_answer(source, threads)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for isq_type in types:
            started = time.monotonic()
            path = quantized_model(source, isq_type, Path(cache), threads)
            quantize_seconds = time.monotonic() - started
            started = time.monotonic()
            quantized_model(source, isq_type, Path(cache), threads)
            hit_seconds = time.monotonic() - started
            answer = await greedy_answer(path, threads)
            rows.append(
                {
                    "type": isq_type,
                    "bytes": path.stat().st_size,
                    "quantize_seconds": round(quantize_seconds, 2),
                    "cache_hit_seconds": round(hit_seconds, 3),
                    "answer": answer,
                    "words_as_source": common_prefix_words(answer, source_answer),
                }
            )
    return {
        "source": {"file": source.name, "bytes": source.stat().st_size, "answer": source_answer},
        "threads": threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "rows": rows,
    }


def report(result: dict[str, object]) -> None:
    source = result["source"]
    assert isinstance(source, dict)
    print(f"source {source['file']}: {source['bytes'] / 1e6:.1f} MB, answers {source['answer']!r}")
    print("| type | MB | × source | quantize s | cache hit s | words as source | answer |")
    print("|---|---|---|---|---|---|---|")
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        print(
            f"| {row['type']} | {row['bytes'] / 1e6:.1f} | {row['bytes'] / source['bytes']:.2f} | "
            f"{row['quantize_seconds']} | {row['cache_hit_seconds']} | {row['words_as_source']} | {row['answer']!r} |"
        )


def plot(result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    source = result["source"]
    assert isinstance(rows, list) and isinstance(source, dict)
    figure, (sizes, seconds) = plt.subplots(1, 2, figsize=(11, 4))
    names = [row["type"] for row in rows]
    sizes.bar(names, [row["bytes"] / 1e6 for row in rows])
    sizes.axhline(source["bytes"] / 1e6, color="black", linestyle="--", label=f"source ({source['file']})")
    sizes.set_ylabel("MB")
    sizes.legend()
    seconds.bar(names, [row["quantize_seconds"] for row in rows])
    seconds.set_ylabel(f"seconds to quantize ({result['threads']} threads)")
    for axis in (sizes, seconds):
        axis.tick_params(axis="x", rotation=45)
    figure.suptitle("LLM_ISQ_TYPE on llama.cpp: SmolLM2-135M-Instruct Q4_1 requantized")
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", nargs="+", default=TYPES)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    result = asyncio.run(run(args.types, args.threads))
    report(result)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"isq-{time.strftime('%Y-%m-%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, stem.with_suffix(".png"))
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
