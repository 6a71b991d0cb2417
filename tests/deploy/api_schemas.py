"""Check rendered manifests against their APIs: Kubernetes' own OpenAPI schemas for built-in kinds, and for the
custom resources the chart renders (KEDA's ScaledObject, the Inference Extension's InferencePool, LeaderWorkerSet)
the JSON schemas in crds/, written from each project's published API definition (the source is in each file's
$comment). Pod templates and HPA behaviour inside custom resources are core types: checked by Kubernetes' schemas.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

KUBERNETES_VERSIONS = ["1.27", kubernetes_validate.utils.latest_version()]
CRDS = Path(__file__).with_name("crds")
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-v1alpha1.schema.json",
    ("inference.networking.k8s.io/v1", "InferencePool"): "inferencepool-v1.schema.json",
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkerset-v1.schema.json",
}
# Checked by shape in test_chart.py; no schema of ours.
UNCHECKED_KINDS = {"ServiceMonitor", "PrometheusRule"}


@cache
def custom_schema(file_name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((CRDS / file_name).read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def validate_core(manifest: dict[str, Any], where: str) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{where} is invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}"
            ) from None


def validate_custom(manifest: dict[str, Any], where: str) -> None:
    file_name = CUSTOM_SCHEMAS[(manifest["apiVersion"], manifest["kind"])]
    errors = sorted(custom_schema(file_name).iter_errors(manifest), key=lambda e: list(e.path))
    if errors:
        lines = [f"{list(e.path)}: {e.message}" for e in errors]
        raise AssertionError(f"{where} does not match {file_name}:\n" + "\n".join(lines))
    for path, core in embedded_core_objects(manifest):
        validate_core(core, f"{where} {path}")


def embedded_core_objects(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Core API objects inside a custom resource, each wrapped as the top-level kind Kubernetes has a schema for."""
    spec = manifest["spec"]
    if manifest["kind"] == "LeaderWorkerSet":
        templates = spec["leaderWorkerTemplate"]
        return [
            (
                f"leaderWorkerTemplate.{name}",
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": templates[name]},
            )
            for name in ("leaderTemplate", "workerTemplate")
            if name in templates
        ]
    if manifest["kind"] == "ScaledObject":
        behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior is None:
            return []
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": 1, "behavior": behavior},
        }
        return [("advanced.horizontalPodAutoscalerConfig.behavior", hpa)]
    return []


def validate_manifests(manifests: dict[str, dict[str, Any]]) -> None:
    for key, manifest in manifests.items():
        if manifest["kind"] in UNCHECKED_KINDS:
            continue
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_SCHEMAS:
            validate_custom(manifest, key)
        else:
            validate_core(manifest, key)
