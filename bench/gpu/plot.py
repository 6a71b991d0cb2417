"""Plot a bench/gpu results JSON: output tokens/s, TTFT and ITL against concurrency, both servers.

python bench/gpu/plot.py bench/results/gpu-DATE.json   # writes bench/results/gpu-DATE.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SERVERS = {
    "ours": "llm-inference, /v1/completions",
    "ours_api": "llm-inference, /api/generate/stream",
    "vllm_serve": "vllm serve",
}
PANELS = [
    ("output_tokens_per_s", None, "output tokens/s"),
    ("ttft_p50_ms", "ttft_p99_ms", "TTFT ms (p50 solid, p99 dashed)"),
    ("itl_p50_ms", "itl_p99_ms", "inter-token latency ms (p50 solid, p99 dashed)"),
]


def plot(path: Path) -> Path:
    report = json.loads(path.read_text())
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for axis, (key, key99, title) in zip(axes, PANELS, strict=True):
        for index, (name, label) in enumerate(SERVERS.items()):
            rows = report["results"].get(name, [])
            levels = [r["concurrency"] for r in rows]
            color = f"C{index}"
            axis.plot(levels, [r.get(key) for r in rows], "o-", color=color, label=label)
            if key99:
                axis.plot(levels, [r.get(key99) for r in rows], "o--", color=color, alpha=0.6)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent streams")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        if key != "output_tokens_per_s":
            axis.set_yscale("log")
    axes[0].legend()
    figure.suptitle(
        f"{report['model']} on {report['device']}, vLLM {report['vllm']}, "
        f"{report['workload']['input_tokens']} in / {report['workload']['output_tokens']} out tokens"
    )
    figure.tight_layout()
    output = path.with_suffix(".png")
    figure.savefig(output, dpi=110)
    return output


if __name__ == "__main__":
    print(plot(Path(sys.argv[1])))
