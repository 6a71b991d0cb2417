"""What a benchmark ran on, for its results: every figure names its CPU (machines differ: AMD EPYC, Intel Xeon)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. "AMD EPYC 9B14"), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine(load_at_start: tuple[float, float, float]) -> dict[str, object]:
    """A result's "machine": the CPU, its cores, and the load averages at the run's start and now (its end)."""
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }
