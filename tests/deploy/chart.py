"""Render the Helm chart with Helm's own library (helm-python-sdk, Helm v4) and pick its manifests apart."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "llm-inference"
PRODUCTION_VALUES = CHART / "ci" / "gpu-tls-autoscaling-values.yaml"
RELEASE = "demo"


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def schema_errors(values: dict[str, Any]) -> str:
    """What the chart's values.schema.json says about `values`, which it must refuse."""
    with helm.Chart.load(CHART) as chart:
        try:
            chart.validate_schema(values)
        except helm.HelmValuesError as error:
            return str(error)
    raise AssertionError("the schema accepted the values")


def render(values: dict[str, Any] | None = None, chart: Path = CHART) -> dict[str, dict[str, Any]]:
    """Validate the values against values.schema.json, render, and return the manifests by kind/name."""
    with helm.Chart.load(chart) as loaded:
        loaded.validate_schema(copy.deepcopy(values or {}))
        rendered = loaded.render(copy.deepcopy(values or {}), name=RELEASE, namespace="llm", is_install=True)
    manifests = {}
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                manifests[f"{document['kind']}/{document['metadata']['name']}"] = document
    return manifests


def notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(CHART) as loaded:
        rendered = loaded.render(copy.deepcopy(values or {}), name=RELEASE, namespace="llm", is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def one(manifests: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [m for key, m in manifests.items() if key.startswith(kind + "/") and not _is_test_hook(m)]
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def kinds(manifests: dict[str, dict[str, Any]]) -> set[str]:
    return {m["kind"] for m in manifests.values()}


def helm_test_pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pods = [m for m in manifests.values() if _is_test_hook(m)]
    assert len(pods) == 1
    return pods[0]


def _is_test_hook(manifest: dict[str, Any]) -> bool:
    return manifest["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"


def server_container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def container_env(manifests: dict[str, dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets: its envFrom ConfigMaps/Secrets (rendered ones), then its env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(manifests[f"ConfigMap/{source['configMapRef']['name']}"]["data"])
        elif f"Secret/{source['secretRef']['name']}" in manifests:
            env.update(manifests[f"Secret/{source['secretRef']['name']}"]["stringData"])
    for variable in container.get("env", []):
        if "value" in variable:  # not one read from a Secret at run time (valueFrom)
            env[variable["name"]] = variable["value"]
    return env


def port_number(container: dict[str, Any], port: str | int) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)
