"""Result files that never replace an earlier run's: a second run of a day gets -2, a third -3, and so on."""

from __future__ import annotations

from pathlib import Path


def unused(path: Path) -> Path:
    """`path` if no earlier run wrote it, else the first of path-2.json, path-3.json, … that is free."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate
