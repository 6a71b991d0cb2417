"""How long a first install compiles llama-cpp-python, by build option: the locked source archive built into a
wheel with an empty cache, once per variant per round, variants alternating. Wall time depends on what else
the machine runs; the CPU time (user + system of the build's processes) is the work itself.

    .venv/bin/python -m bench.llama_build --rounds 1 --out bench/results/llama-build-<date>.json
    .venv/bin/python -m bench.llama_build --plot-only bench/results/llama-build-<date>.json   # redraw the PNG
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    # What llama-cpp-python builds by default: llama, ggml and the multimodal library (mtmd).
    "default": "",
    # The multimodal library left out (the service never loads it).
    "no-mtmd": "-DLLAVA_BUILD=OFF",
    # What scripts/install.sh builds: llama.cpp's "common" library left out too (llama-cpp-python never loads it).
    "no-mtmd-no-common": f"-DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE={ROOT / 'scripts/llama-cpp-no-common.cmake'}",
}


def build_once(lock_part: Path, cmake_args: str, jobs: int) -> dict[str, float]:
    env = {**os.environ, "CMAKE_ARGS": cmake_args, "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps", "--require-hashes",
             "--requirement", str(lock_part), "--wheel-dir", out],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
        wheel_bytes = sum(p.stat().st_size for p in Path(out).glob("*.whl"))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": time.monotonic() - started, "cpu_seconds": cpu, "wheel_bytes": wheel_bytes}


def plot(result: dict[str, Any], path: Path) -> None:
    """CPU and wall seconds of each variant's builds, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["variants"])
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for offset, key, label in ((-0.2, "cpu_seconds", "CPU s (the work)"), (0.2, "wall_seconds", "wall s")):
        values = [[run[key] for run in result["variants"][name]["runs"]] for name in names]
        axis.bar([i + offset for i in range(len(names))], [statistics.median(v) for v in values], 0.4, label=label)
        for i, runs in enumerate(values):
            axis.plot([i + offset] * len(runs), runs, "k.", markersize=4)
    axis.set_xticks(range(len(names)), names)
    axis.set_ylabel("seconds")
    axis.set_title(f"llama-cpp-python build, {result['jobs']} jobs, {result['cpu']}", fontsize=9)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--lock", default=str(ROOT / "requirements/dev.lock"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot-only", type=Path, help="draw the PNG of an earlier run's JSON and stop")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.plot_only.read_text()), args.plot_only.with_suffix(".png"))
        return
    with tempfile.TemporaryDirectory() as work:
        lock_part = Path(work) / "llama.lock"
        part = subprocess.run(
            [str(ROOT / "scripts/lock-part.sh"), args.lock, "llama-cpp-python", "only"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        lock_part.write_text(part.stdout)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
        for round_number in range(args.rounds):
            order = list(VARIANTS) if round_number % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                runs[name].append(build_once(lock_part, VARIANTS[name], args.jobs))
                print(f"round {round_number + 1} {name}: {runs[name][-1]}", flush=True)
    load = os.getloadavg()
    print(f"\nllama-cpp-python wheel from the locked sdist, {args.jobs} jobs, {cpu_model()}, {os.cpu_count()} cores")
    print(f"{'variant':<18} {'wall s (min-max)':>22} {'cpu s (min-max)':>22} {'wheel MB':>9}")
    for name, measured in runs.items():
        wall = [m["wall_seconds"] for m in measured]
        cpu = [m["cpu_seconds"] for m in measured]
        print(
            f"{name:<18} {statistics.median(wall):>8.0f} ({min(wall):.0f}-{max(wall):.0f}){'':>6}"
            f" {statistics.median(cpu):>8.0f} ({min(cpu):.0f}-{max(cpu):.0f}){'':>6}"
            f" {measured[0]['wheel_bytes'] / 1e6:>9.1f}"
        )
    if args.out:
        result = {
            "cpu": cpu_model(), "cores": os.cpu_count(), "jobs": args.jobs, "load_average_at_end": load,
            "variants": {name: {"cmake_args": VARIANTS[name], "runs": runs[name]} for name in VARIANTS},
        }  # fmt: skip
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, args.out.with_suffix(".png"))
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
