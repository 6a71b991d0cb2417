"""The Grafana dashboards under the Helm chart and their PromQL, for the tests that check and run it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DASHBOARDS = sorted((Path(__file__).parents[2] / "helm" / "llm-inference" / "dashboards").glob("*.json"))
# Grafana's variables, replaced by values PromQL accepts: its own intervals, and `.*` (the dashboards' "All")
# for the template variables.
GRAFANA_VARIABLES = re.compile(r"\$\{?(\w+)\}?")
VARIABLE_VALUES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, set[str]]]:
    """(where, PromQL expression, labels the query reads from the result) for every query in the dashboard:
    each panel's targets and each template variable's label_values() selector."""
    found = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels += panel.get("panels", [])
        found += [(panel["title"], target["expr"], set()) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match, f"variable {variable['name']}: unexpected query {variable['query']}"
            found.append((f"${variable['name']}", match["selector"], {match["label"]}))
    return found


def substitute(expr: str, **values: str) -> str:
    """The expression with Grafana's variables replaced: `values` first, then the defaults above, else `.*`."""
    return GRAFANA_VARIABLES.sub(lambda m: values.get(m[1], VARIABLE_VALUES.get(m[1], ".*")), expr)
