"""Plot a bench/gpu results JSON: one column per workload; output tokens/s (with vLLM's offline engine as the
limit), TTFT and ITL against concurrency, each server's two passes as thin lines around its combined figure.

python bench/gpu/plot.py bench/results/gpu-DATE.json   # writes bench/results/gpu-DATE.png

Also reads the single-workload JSON of earlier runs (`results` by server, one `workload`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SERVERS = {
    "ours": "llm-inference, /v1/completions",
    "ours_api": "llm-inference, /api/generate/stream",
    "vllm_serve": "vllm serve",
}
ROWS = [
    ("output_tokens_per_s", None, "output tokens/s"),
    ("ttft_p50_ms", "ttft_p99_ms", "TTFT ms (p50 solid, p99 dashed)"),
    ("itl_p50_ms", "itl_p99_ms", "inter-token latency ms (p50 solid, p99 dashed)"),
]


def matrix(report: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{workload: {server: rows}} from either layout."""
    if "workloads" in report:
        results: dict[str, dict[str, list[dict[str, Any]]]] = report["results"]
        return results
    workload = report["workload"]
    return {f"{workload['input_tokens']}x{workload['output_tokens']}": report["results"]}


def plot(path: Path) -> Path:
    report = json.loads(path.read_text())
    cells = matrix(report)
    offline = report.get("offline", {}).get("workloads", {})
    figure, axes = plt.subplots(len(ROWS), len(cells), figsize=(6 * len(cells), 12), squeeze=False)
    for column, (workload, servers) in enumerate(cells.items()):
        for row, (key, key99, title) in enumerate(ROWS):
            axis = axes[row][column]
            for index, (name, label) in enumerate(SERVERS.items()):
                rows = servers.get(name, [])
                if not rows:
                    continue
                levels = [r["concurrency"] for r in rows]
                color = f"C{index}"
                axis.plot(levels, [r.get(key) for r in rows], "o-", color=color, label=label)
                for number in range(max((len(r.get("passes", [])) for r in rows), default=0)):
                    values = [r["passes"][number].get(key) if len(r.get("passes", [])) > number else None for r in rows]
                    axis.plot(levels, values, "-", color=color, alpha=0.3, linewidth=0.8)
                if key99:
                    axis.plot(levels, [r.get(key99) for r in rows], "o--", color=color, alpha=0.6)
            limit = offline.get(workload, {}).get("output_tokens_per_s")
            if key == "output_tokens_per_s" and limit:
                axis.axhline(limit, color="k", linestyle=":", label=f"vLLM offline engine ({limit:,.0f})")
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrent streams")
            axis.set_title(f"{workload}: {title}" if row == 0 else title)
            axis.grid(True, alpha=0.3)
            if key != "output_tokens_per_s":
                axis.set_yscale("log")
            if row == 0:
                axis.legend(fontsize=8)
    validity = "" if report.get("valid", True) else " (INVALID: see kv_valid / engine_config)"
    figure.suptitle(f"{report['model']} on {report['device']}, vLLM {report['vllm']}{validity}")
    figure.tight_layout()
    output = path.with_suffix(".png")
    figure.savefig(output, dpi=100)
    return output


if __name__ == "__main__":
    print(plot(Path(sys.argv[1])))
