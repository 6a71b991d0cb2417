"""Debian's Prometheus and promtool for the alert tests, and the chart's alerts as a plain Prometheus rules file.

Where they are missing the tests skip with the reason, unless LLM_TEST_REQUIRE_PROMETHEUS=1 (set by `make
test`, which installs them first): then they fail."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import load_values, one, render

PROMETHEUS = os.environ.get("LLM_TEST_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("LLM_TEST_PROMTOOL", "/usr/bin/promtool")
PROMTOOL_TESTS = Path(__file__).with_name("promtool")
# What the promtool unit tests were written against (autoscaling on); the chart renders release "demo" in "llm".
TEST_VALUES = PROMTOOL_TESTS / "values.yaml"


def require(binary: str) -> str:
    if Path(binary).exists() or shutil.which(binary):
        return binary
    reason = f"{binary} is missing (`make prometheus` installs Debian's prometheus package)"
    if os.environ.get("LLM_TEST_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(f"LLM_TEST_REQUIRE_PROMETHEUS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def promtool_values(**overrides: Any) -> dict[str, Any]:
    values = load_values(TEST_VALUES)
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value}
    return values


def rule_groups(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The rendered PrometheusRule's groups: the very `groups` of a Prometheus rules file."""
    groups: list[dict[str, Any]] = one(render(values), "PrometheusRule")["spec"]["groups"]
    return groups


def write_rules_file(values: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump({"groups": rule_groups(values)}, sort_keys=False, width=1000))
    return path


def alerting_rules(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rule_groups(values) for rule in group["rules"] if "alert" in rule]


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require(PROMTOOL), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)
