"""The Helm chart as Helm renders and lints it, checked against Kubernetes' own API schemas.

Helm here is the real thing without a binary: helm-python-sdk binds Helm v4's Go library (render, schema
validation, lint) and helm-sdkpy another build of Helm's lint. kubernetes-validate checks every manifest
against the OpenAPI schemas of the oldest Kubernetes the chart supports and the newest it knows, strictly
(unknown fields are errors).
"""

from __future__ import annotations

import asyncio
import math
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import helm_sdkpy
import kubernetes_validate
import pytest
import yaml

from llm_inference.cli import WORKER_KILL_MARGIN_SECONDS
from llm_inference.settings import DEFAULTS, load_settings, masked
from tests.deploy.chart import (
    CHART,
    PRODUCTION_VALUES,
    container_env,
    helm_test_pod,
    kinds,
    load_values,
    notes,
    one,
    render,
    schema_errors,
    server_container,
)

KUBERNETES_VERSIONS = ["1.27", kubernetes_validate.utils.latest_version()]
# Custom resources have no schema in kubernetes-validate; their shape is asserted below instead.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def validate_all(manifests: dict[str, dict[str, Any]]) -> None:
    for key, manifest in manifests.items():
        if manifest["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{key} is invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}"
                ) from None


def lint(values: dict[str, Any] | None = None) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version="v1.27.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert not problems and not report["errors"], report


def test_default_values_render_lint_and_validate() -> None:
    manifests = render()
    assert kinds(manifests) == {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "Pod"}
    validate_all(manifests)
    lint()
    # helm-sdkpy: Helm's lint action through another binding, on the chart as shipped.
    report = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(CHART)))
    assert report["TotalChartsLinted"] == 1 and not report["Errors"], report
    assert all(message["Severity"] < 2 for message in report["Messages"]), report
    assert "helm test demo --namespace llm" in notes() and "port-forward service/demo-llm-inference" in notes()


def test_production_values_gpu_tls_autoscaling_servicemonitor() -> None:
    values = load_values(PRODUCTION_VALUES)
    manifests = render(values)
    validate_all(manifests)
    lint(values)
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy", "PersistentVolumeClaim"} <= kinds(manifests)

    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    server = server_container(manifests)
    # GPU: the vLLM image, the GPU limit, GPU nodes
    assert server["image"].startswith("llm-inference-cuda:")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    # TLS: the Secret mounted where the settings point, HTTPS probes and scrapes
    env = container_env(manifests, server)
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert env["LLM_TLS_ENABLED"] == "true"
    assert Path(env["LLM_TLS_CERT_PATH"]).parent == Path(mounts["tls"])
    assert next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"] == "llm-inference-tls"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["scheme"] == "HTTPS"
    # autoscaling: the HPA owns the replica count
    assert "replicas" not in deployment["spec"]
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    # ServiceMonitor: the Service's named port, /metrics, over HTTPS, with the operator's release label
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["scheme"]) == ("/metrics", "https")
    # the model cache on the PVC, filled by `llm-inference fetch-model` before the server starts
    [init] = pod["initContainers"]
    assert init["command"] == ["llm-inference", "fetch-model"] and init["image"] == server["image"]
    assert init["envFrom"] == server["envFrom"]
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert cache["persistentVolumeClaim"]["claimName"] == one(manifests, "PersistentVolumeClaim")["metadata"]["name"]
    # secrets from the existing Secret
    assert {"secretRef": {"name": "llm-inference-secrets"}} in server["envFrom"]
    assert "Secret" not in kinds(manifests)


def test_bad_values_file_is_rejected_by_the_schema() -> None:
    bad = load_values(Path(__file__).with_name("bad-values.yaml"))
    message = schema_errors(bad)
    for mistake in (
        "/replicaCount",
        "/config/LLM_BACKEND",
        "LLM_MAX_CONCURENT_REQUESTS",
        "/config/LLM_DEFAULT_TOP_P",
        "/config/LLM_SHUTDOWN_GRACE_SECONDS",
        "/tls/secretName",
        "/gpu/count",
        "/probes/startup/failureThreshold",
        "/env",
    ):
        assert mistake in message, f"{mistake} not reported:\n{message}"
    # Helm's install path (render) refuses them too, as lint does.
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.render(bad, name="demo")
    assert helm.lint(CHART, bad)["errors"]


def test_config_schema_is_generated_from_the_settings() -> None:
    import subprocess
    import sys

    check = subprocess.run(
        [sys.executable, "scripts/chart_config_schema.py", "--check"],
        cwd=CHART.parents[1],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = load_values(CHART / "values.yaml")
    assert list(values["config"]) == list(schema["properties"]["config"]["properties"]), (
        "values.yaml `config` must list every setting the schema has, in the same order"
    )


def test_rendered_configmap_is_what_the_service_accepts_and_defaults_match() -> None:
    env = container_env(render(), server_container(render()))
    settings, warnings = load_settings(env)
    assert warnings == [], "every LLM_* variable the chart sets must be a setting the service knows"
    chart_settings, service_defaults = masked(settings), masked(DEFAULTS)
    differences = {
        k: (chart_settings[k], service_defaults[k]) for k in chart_settings if chart_settings[k] != service_defaults[k]
    }
    assert differences == {}, "the chart's defaults must be the service's defaults"
    assert env["HF_HOME"] == load_values(CHART / "values.yaml")["modelCache"]["path"]


@pytest.mark.parametrize("values_source", ["default", "production"])
def test_shutdown_timing_adds_up(values_source: str) -> None:
    values = load_values(PRODUCTION_VALUES) if values_source == "production" else {}
    manifests = render(values)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    server = server_container(manifests)
    drain = float(container_env(manifests, server)["LLM_SHUTDOWN_GRACE_SECONDS"])
    pre_stop = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    # The kubelet kills the container terminationGracePeriodSeconds after preStop starts; the service needs
    # the preStop sleep, its drain, and Granian's margin to stop the worker (its workers_kill_timeout).
    assert pod["terminationGracePeriodSeconds"] > pre_stop + math.ceil(drain) + WORKER_KILL_MARGIN_SECONDS


def test_a_grace_period_too_short_for_the_drain_fails_the_render() -> None:
    with pytest.raises(helm.HelmRenderError, match="terminationGracePeriodSeconds=30 must exceed"):
        render({"config": {"LLM_SHUTDOWN_GRACE_SECONDS": 25}, "shutdown": {"terminationGracePeriodSeconds": 30}})
    pod = one(render({"shutdown": {"terminationGracePeriodSeconds": 41}}), "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 41


def test_pod_is_non_root_with_a_read_only_root_and_writable_volumes() -> None:
    manifests = render()
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    server = server_container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["allowPrivilegeEscalation"] is False
    assert server["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in server["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", container_env(manifests, server)["HF_HOME"]} <= mounts
    volumes = {v["name"] for v in pod["volumes"]}
    assert {m["name"] for m in server["volumeMounts"]} <= volumes
    assert pod["automountServiceAccountToken"] is False


def test_secrets_from_values_an_existing_secret_or_a_keys_file() -> None:
    rendered = render({"secret": {"env": {"HF_TOKEN": "hf_example", "LLM_API_KEYS": "k" * 20}}})
    secret = one(rendered, "Secret")
    assert secret["stringData"] == {"HF_TOKEN": "hf_example", "LLM_API_KEYS": "k" * 20}
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in server_container(rendered)["envFrom"]
    assert "HF_TOKEN" not in one(rendered, "ConfigMap")["data"]
    validate_all(rendered)

    existing = render({"secret": {"existingSecret": "team-secrets"}})
    assert "Secret" not in kinds(existing)
    assert {"secretRef": {"name": "team-secrets"}} in server_container(existing)["envFrom"]

    keys_file = render({"apiKeysFile": {"secretName": "rotated-keys", "key": "keys.txt"}})
    server = server_container(keys_file)
    env = container_env(keys_file, server)
    mount = next(m for m in server["volumeMounts"] if m["name"] == "api-keys")
    assert env["LLM_API_KEYS_FILE"] == f"{mount['mountPath']}/keys.txt"
    assert load_settings({**env, "LLM_API_KEYS_FILE": ""})[1] == []
    validate_all(keys_file)

    token_file = render({"toolDispatchKeyFile": {"secretName": "tool-token", "key": "token"}})
    server = server_container(token_file)
    mount = next(m for m in server["volumeMounts"] if m["name"] == "tool-dispatch")
    assert container_env(token_file, server)["LLM_TOOL_DISPATCH_KEY_FILE"] == f"{mount['mountPath']}/token"
    volumes = one(token_file, "Deployment")["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == "tool-dispatch")
    assert volume["secret"]["secretName"] == "tool-token"
    validate_all(token_file)


def test_optional_resources_are_off_by_default_and_each_renders_valid() -> None:
    defaults = kinds(render())
    assert not {"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy", "PersistentVolumeClaim"} & defaults
    network = render({"networkPolicy": {"enabled": True}})
    policy = one(network, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    validate_all(network)
    cpu_hpa = render({"autoscaling": {"enabled": True, "signal": "cpu"}})  # the queue (default): test_chart_scaling
    assert one(cpu_hpa, "HorizontalPodAutoscaler")["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    validate_all(cpu_hpa)
    claim = render({"modelCache": {"type": "existingClaim", "existingClaim": "models"}})
    volumes = one(claim, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "model-cache")["persistentVolumeClaim"] == {"claimName": "models"}


def test_service_session_affinity_is_off_by_default_and_clientip_on_request() -> None:
    # Sessions are per replica (docs/api.md "Sessions"): ClientIP keeps a client on the pod holding its session.
    default = one(render(), "Service")["spec"]
    assert default["sessionAffinity"] == "None" and "sessionAffinityConfig" not in default
    pinned = render({"service": {"sessionAffinity": "ClientIP", "sessionAffinityTimeoutSeconds": 3600}})
    spec = one(pinned, "Service")["spec"]
    assert spec["sessionAffinity"] == "ClientIP"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 3600}}
    validate_all(pinned)
    lint({"service": {"sessionAffinity": "ClientIP"}})
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.render({"service": {"sessionAffinity": "Cookie"}}, name="demo")


def test_grafana_dashboards_ship_every_json_file(tmp_path: Path) -> None:
    chart = tmp_path / "llm-inference"
    shutil.copytree(CHART, chart)
    (chart / "dashboards").mkdir(exist_ok=True)
    (chart / "dashboards" / "fixture-a.json").write_text('{"title": "A", "panels": []}')
    (chart / "dashboards" / "fixture-b.json").write_text('{"title": "B", "panels": [{"type": "timeseries"}]}')
    shipped = sorted(p.name for p in (chart / "dashboards").glob("*.json"))

    manifests = render({"grafanaDashboards": {"enabled": True}}, chart=chart)
    dashboards = manifests["ConfigMap/demo-llm-inference-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert sorted(dashboards["data"]) == shipped
    for name in shipped:
        assert yaml.safe_load(dashboards["data"][name]) == yaml.safe_load((chart / "dashboards" / name).read_text())
    validate_all(manifests)
    assert "ConfigMap/demo-llm-inference-dashboards" not in render(chart=chart)


def test_helm_test_hook_pod_targets_the_service() -> None:
    manifests = render()
    pod = helm_test_pod(manifests)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    service = one(manifests, "Service")
    assert env["BASE_URL"] == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_base_path_puts_its_prefix_in_the_probes_the_scrape_and_the_helm_test() -> None:
    manifests = render({"config": {"LLM_BASE_PATH": "/llm"}, "serviceMonitor": {"enabled": True}})
    validate_all(manifests)
    container = server_container(manifests)
    probes = {name: container[name]["httpGet"]["path"] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {
        "startupProbe": "/llm/health/ready",
        "readinessProbe": "/llm/health/ready",
        "livenessProbe": "/llm/health/live",
    }
    assert container_env(manifests, container)["LLM_BASE_PATH"] == "/llm"
    assert one(manifests, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/llm/metrics"
    env = {e["name"]: e["value"] for e in helm_test_pod(manifests)["spec"]["containers"][0]["env"]}
    assert env["BASE_URL"].endswith("/llm")
    assert "/llm/api/generate" in notes({"config": {"LLM_BASE_PATH": "/llm"}})
    # Unset, every path is at the root as before.
    assert server_container(render())["readinessProbe"]["httpGet"]["path"] == "/health/ready"


@pytest.mark.parametrize("base_path", ["llm", "/llm/", "/"])
def test_a_base_path_that_is_not_a_prefix_is_refused_by_the_schema(base_path: str) -> None:
    assert "LLM_BASE_PATH" in schema_errors({"config": {"LLM_BASE_PATH": base_path}})


def test_init_container_mounts_the_files_its_settings_check_reads() -> None:
    # `llm-inference fetch-model` validates every setting as start-up does, the TLS pair and the key file included.
    values = load_values(PRODUCTION_VALUES)
    values["apiKeysFile"] = {"secretName": "rotated-keys", "key": "keys.txt"}
    manifests = render(values)
    [init] = one(manifests, "Deployment")["spec"]["template"]["spec"]["initContainers"]
    env = container_env(manifests, init)
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert Path(env["LLM_TLS_CERT_PATH"]).parent == Path(mounts["tls"])
    assert Path(env["LLM_API_KEYS_FILE"]).parent == Path(mounts["api-keys"])


def test_shared_state_from_a_url_an_existing_secret_or_the_charts_valkey() -> None:
    # Off by default: no store, nothing deployed for one, each pod on its own.
    assert "LLM_STATE_URL" not in container_env(render(), server_container(render()))
    assert "StatefulSet" not in kinds(render())
    assert "Each pod keeps its own rate limits and sessions" in notes({"replicaCount": 2})

    # A server you run, its password and CA certificates from Secrets, mounted where the settings point.
    values = {
        "state": {
            "url": "rediss://valkey.shared:6380/2",
            "passwordSecret": {"name": "valkey-auth", "key": "password"},
            "tlsCaSecret": {"name": "valkey-ca", "key": "ca.crt"},
        }
    }
    manifests = render(values)
    validate_all(manifests)
    lint(values)
    server = server_container(manifests)
    env = container_env(manifests, server)
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert env["LLM_STATE_URL"] == "rediss://valkey.shared:6380/2"
    assert Path(env["LLM_STATE_PASSWORD_FILE"]) == Path(mounts["state-password"]) / "password"
    assert Path(env["LLM_STATE_TLS_CA_FILE"]) == Path(mounts["state-ca"]) / "ca.crt"
    volumes = {v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state-password"]["secret"]["secretName"] == "valkey-auth"
    assert "rediss://valkey.shared:6380/2, shared by every pod" in notes(values)

    # A URL carrying its password, from a Secret you manage: read from it at run time, never in the ConfigMap.
    production = load_values(PRODUCTION_VALUES)
    manifests = render(production)
    for container in (
        server_container(manifests),
        *one(manifests, "Deployment")["spec"]["template"]["spec"]["initContainers"],
    ):
        [from_secret] = [e for e in container["env"] if e["name"] == "LLM_STATE_URL"]
        assert from_secret["valueFrom"]["secretKeyRef"] == {"name": "llm-inference-state", "key": "url"}
    assert "LLM_STATE_URL" not in manifests["ConfigMap/demo-llm-inference"]["data"]

    # The quick start: a Valkey the release deploys, reached by name, selected by none of the server's selectors.
    quick = {"state": {"valkey": {"enabled": True}}, "networkPolicy": {"enabled": True, "restrictEgress": True}}
    manifests = render(quick)
    validate_all(manifests)
    lint(quick)
    valkey = one(manifests, "StatefulSet")
    service = manifests["Service/demo-llm-inference-valkey"]
    env = container_env(manifests, server_container(manifests))
    assert env["LLM_STATE_URL"] == f"redis://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/0"
    assert load_settings(env)[1] == []
    pod_labels = valkey["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    server_selector = manifests["Service/demo-llm-inference"]["spec"]["selector"]
    assert not server_selector.items() <= pod_labels.items(), "the API Service must not send requests to Valkey"
    pdb = one(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert not pdb.items() <= pod_labels.items()
    spec = valkey["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert "--save" in spec["containers"][0]["args"], "in memory only"
    guard = manifests["NetworkPolicy/demo-llm-inference-valkey"]["spec"]
    assert guard["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == server_selector
    egress = manifests["NetworkPolicy/demo-llm-inference"]["spec"]["egress"]
    assert any(to["podSelector"]["matchLabels"] == pod_labels for rule in egress for to in rule.get("to", []))
    assert "Valkey StatefulSet demo-llm-inference-valkey" in notes(quick)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"url": "redis://a:6379", "valkey": {"enabled": True}}, "set one of state.url, state.existingSecret"),
        ({"passwordSecret": {"name": "auth"}}, "need a store"),
        ({"url": "redis://a:6379", "tlsCaSecret": {"name": "ca"}}, "must start with rediss://"),
    ],
)
def test_state_values_that_cannot_work_fail_the_render(state: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render({"state": state})


def test_a_state_url_that_is_not_redis_is_refused_by_the_schema() -> None:
    assert "/state/url" in schema_errors({"state": {"url": "http://valkey:6379"}})
