"""The chart values docs/kubernetes.md shows render as it says, and the adapter rule it shows is the chart's own.

tests/test_readme.py runs the pages' requests against a real server; these blocks are values for Helm, so they
are rendered here by Helm's own library and the manifests checked against Kubernetes' and the CRDs' schemas.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.api_schemas import validate_manifests
from tests.deploy.chart import CHART, kinds, load_values, render

PAGE = CHART.parents[1] / "docs" / "kubernetes.md"
YAML_BLOCKS = [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)]
VALUE_KEYS = set(load_values(CHART / "values.yaml"))
SHOWN_VALUES = [block for block in YAML_BLOCKS if set(block) <= VALUE_KEYS]


def test_the_page_shows_the_adapter_rule_and_two_sets_of_values() -> None:
    assert len(YAML_BLOCKS) == 3 and len(SHOWN_VALUES) == 2


def test_the_adapter_rule_shown_is_the_one_the_chart_ships() -> None:
    [shown] = [block for block in YAML_BLOCKS if set(block) == {"rules"}]
    shipped = load_values(CHART / "values.yaml")["autoscaling"]["prometheusAdapter"]["rules"]
    assert shown["rules"]["custom"] == shipped


@pytest.mark.parametrize("values", SHOWN_VALUES, ids=lambda values: "+".join(sorted(values)))
def test_the_values_shown_render_what_the_page_says(values: dict[str, Any]) -> None:
    manifests = render(values)
    validate_manifests(manifests)
    if values.get("multiNode", {}).get("enabled"):
        assert "LeaderWorkerSet" in kinds(manifests) and "Deployment" not in kinds(manifests)
    if values.get("autoscaling", {}).get("keda", {}).get("enabled"):
        assert "ScaledObject" in kinds(manifests) and "HorizontalPodAutoscaler" not in kinds(manifests)
