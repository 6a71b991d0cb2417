"""Print the outcome of each test suite run by `make test`, from pytest's JUnit XML: the counts, then every
failed or erroring test by id, so the failures of both suites are read in one place at the end of the log.

    python3 scripts/test_summary.py build/test-results/core.xml build/test-results/vllm.xml
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def test_id(case: ET.Element) -> str:
    module_path = case.get("classname", "").replace(".", "/")
    return f"{module_path}.py::{case.get('name', '?')}"


def summarize(report: Path) -> list[str]:
    if not report.is_file():
        return [f"{report.stem}: no results (the suite did not run, or stopped before pytest wrote {report})"]
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    failures = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = next((child for child in case if child.tag in {"failure", "error", "skipped"}), None)
        kind = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(
            outcome.tag if outcome is not None else "", "passed"
        )
        counts[kind] += 1
        if kind in {"failed", "error"} and outcome is not None:
            reason = (outcome.get("message") or "").strip().splitlines()
            failures.append(f"  {kind.upper()} {test_id(case)}" + (f" - {reason[0][:200]}" if reason else ""))
    line = ", ".join(f"{number} {kind}" for kind, number in counts.items() if number)
    return [f"{report.stem}: {line or 'no tests'}", *failures]


def main() -> None:
    print("== test summary ==")
    for report in sys.argv[1:]:
        print("\n".join(summarize(Path(report))))


if __name__ == "__main__":
    main()
