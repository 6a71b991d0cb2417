"""The chart past one pod: queue-driven autoscaling (HPA through prometheus-adapter, or KEDA), an InferencePool
for an inference gateway, and multi-node serving as a LeaderWorkerSet. Rendered by Helm's own library; every
custom resource checked against a schema written from its project's API definition (crds/, api_schemas.py),
pod templates and HPA behaviour against Kubernetes' own schemas. Nothing here runs in a cluster."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from llm_inference.settings import load_settings
from tests.deploy.api_schemas import validate_custom, validate_manifests
from tests.deploy.chart import (
    CHART,
    PRODUCTION_VALUES,
    container_env,
    kinds,
    load_values,
    notes,
    one,
    render,
    schema_errors,
    server_container,
)
from tests.telemetry.scrape import Scrape

ROOT = CHART.parents[1]
MULTI_NODE_VALUES = CHART / "ci" / "multinode-gateway-keda-values.yaml"
SCALING_KINDS = {"HorizontalPodAutoscaler", "ScaledObject", "InferencePool", "LeaderWorkerSet"}
MULTI_NODE = {
    "multiNode": {"enabled": True, "size": 2},
    "gpu": {"enabled": True, "count": 8},
    "config": {"LLM_TENSOR_PARALLEL_SIZE": 8, "LLM_PIPELINE_PARALLEL_SIZE": 2},
}


def pod_spec(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return one(manifests, "Deployment")["spec"]["template"]["spec"]


def grace_seconds(manifests: dict[str, dict[str, Any]]) -> int:
    if "LeaderWorkerSet" in kinds(manifests):
        return int(leader(manifests)["spec"]["terminationGracePeriodSeconds"])
    return int(pod_spec(manifests)["terminationGracePeriodSeconds"])


def leader(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return one(manifests, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]["leaderTemplate"]


def worker(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return one(manifests, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]["workerTemplate"]


def adapter_metric_names(rules: list[dict[str, Any]], series_name: str) -> list[str]:
    """The custom-metrics names prometheus-adapter serves a series under: each rule whose seriesQuery's
    __name__ matcher selects it, renamed by the rule's name.matches/as (the adapter's ${n} is a regex group)."""
    names = []
    for rule in rules:
        selector = re.search(r'__name__=~"([^"]+)"', rule["seriesQuery"])
        plain = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{", rule["seriesQuery"])
        if (selector and re.fullmatch(selector.group(1), series_name)) or (plain and plain.group(1) == series_name):
            naming = rule.get("name", {})
            matches = naming.get("matches", "^(.*)$")
            as_template = naming.get("as", "${0}")
            names.append(re.sub(matches, re.sub(r"\$\{(\d+)\}", r"\\g<\1>", as_template), series_name))
    return names


def metric_names_in(promql: str) -> set[str]:
    return set(re.findall(r"\b(llm_[a-z_]+)\s*[{(\[]", promql))


# Autoscaling ----------------------------------------------------------------------------------------------------


def test_scaling_resources_are_off_by_default() -> None:
    assert not SCALING_KINDS & kinds(render())
    assert "Deployment" in kinds(render())


def test_the_default_signal_is_the_queue_per_pod_through_prometheus_adapter() -> None:
    values = load_values(CHART / "values.yaml")
    manifests = render({"autoscaling": {"enabled": True}})
    validate_manifests(manifests)
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo-llm-inference",
    }
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "llm_num_requests_waiting"},
                "target": {"type": "AverageValue", "averageValue": "2"},
            },
        }
    ]
    # The adapter rule the chart ships serves exactly the names the HPA asks for, from the service's series.
    rules = values["autoscaling"]["prometheusAdapter"]["rules"]
    for metric in hpa["spec"]["metrics"]:
        name = metric["pods"]["metric"]["name"]
        assert adapter_metric_names(rules, name) == [name]
    # NOTES hands the rule to the operator, who installs the adapter.
    assert "rules.custom" in notes({"autoscaling": {"enabled": True}})
    assert rules[0]["seriesQuery"] in notes({"autoscaling": {"enabled": True}})

    both = one(render({"autoscaling": {"enabled": True, "queue": {"runningPerPod": 48}}}), "HorizontalPodAutoscaler")
    targets = {m["pods"]["metric"]["name"]: m["pods"]["target"]["averageValue"] for m in both["spec"]["metrics"]}
    assert targets == {"llm_num_requests_waiting": "2", "llm_num_requests_running": "48"}
    for name in targets:
        assert adapter_metric_names(rules, name) == [name]


def test_cpu_stays_available_as_the_signal() -> None:
    extra = {"type": "Pods", "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "1"}}}
    manifests = render({"autoscaling": {"enabled": True, "signal": "cpu", "metrics": [extra]}})
    validate_manifests(manifests)
    metrics = one(manifests, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metrics[0] == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    }
    assert metrics[1:] == [extra]
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError, match="targetCPUUtilizationPercentage"):
        chart.validate_schema(
            {"autoscaling": {"enabled": True, "signal": "cpu", "targetCPUUtilizationPercentage": None}}
        )


@pytest.mark.parametrize("autoscaler", ["hpa", "keda"])
@pytest.mark.parametrize("values_source", ["default", "production"])
def test_scale_down_removes_one_pod_per_drain(autoscaler: str, values_source: str) -> None:
    values = load_values(PRODUCTION_VALUES) if values_source == "production" else {}
    values.setdefault("autoscaling", {}).update(enabled=True, keda={"enabled": autoscaler == "keda"})
    manifests = render(values)
    validate_manifests(manifests)
    if autoscaler == "hpa":
        behavior = one(manifests, "HorizontalPodAutoscaler")["spec"]["behavior"]
    else:
        assert "HorizontalPodAutoscaler" not in kinds(manifests), "KEDA makes its own HPA; a second one would fight it"
        behavior = one(manifests, "ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    drain = float(container_env(manifests, server_container(manifests))["LLM_SHUTDOWN_GRACE_SECONDS"])
    grace = grace_seconds(manifests)
    assert grace > drain
    # A removed pod drains for up to LLM_SHUTDOWN_GRACE_SECONDS inside its grace period: remove the next one only
    # after that, so capacity leaves one draining pod at a time, and only after the queue stayed low for 5 min.
    [policy] = behavior["scaleDown"]["policies"]
    assert (policy["type"], policy["value"]) == ("Pods", 1)
    assert policy["periodSeconds"] >= grace
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert "scaleUp" not in behavior  # Kubernetes' default: fast


def test_scale_down_period_is_capped_by_the_api_and_behavior_can_be_replaced() -> None:
    long_drain = render({"autoscaling": {"enabled": True}, "config": {"LLM_SHUTDOWN_GRACE_SECONDS": 3600}})
    validate_manifests(long_drain)
    [policy] = one(long_drain, "HorizontalPodAutoscaler")["spec"]["behavior"]["scaleDown"]["policies"]
    assert policy["periodSeconds"] == 1800  # autoscaling/v2 allows at most 1800
    own = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    hpa = one(render({"autoscaling": {"enabled": True, "behavior": own}}), "HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"] == own
    with pytest.raises(helm.HelmRenderError, match=r"minReplicas=5 must not exceed autoscaling\.maxReplicas=2"):
        render({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}})


def test_keda_scaled_object_sums_the_release_queue_against_a_per_pod_threshold() -> None:
    values = {
        "autoscaling": {
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 6,
            "queue": {"waitingPerPod": 3, "runningPerPod": 0.5},
            "keda": {"enabled": True, "serverAddress": "http://prom.monitoring:9090"},
        },
        "serviceMonitor": {"enabled": True},
    }
    manifests = render(values)
    validate_manifests(manifests)
    scaled = one(manifests, "ScaledObject")
    service = one(manifests, "Service")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo-llm-inference"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 6)
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert set(triggers) == {"llm-num-requests-waiting", "llm-num-requests-running"}
    waiting = triggers["llm-num-requests-waiting"]
    assert (waiting["type"], waiting["metricType"]) == ("prometheus", "AverageValue")
    # The labels the Prometheus Operator gives the ServiceMonitor's targets: this namespace, this Service.
    assert waiting["metadata"] == {
        "serverAddress": "http://prom.monitoring:9090",
        "query": f'sum(llm_num_requests_waiting{{namespace="llm",service="{service["metadata"]["name"]}"}})',
        "threshold": "3",
        "ignoreNullValues": "false",
    }
    assert triggers["llm-num-requests-running"]["metadata"]["threshold"] == "0.5"
    own = render({"autoscaling": {**values["autoscaling"], "keda": {"enabled": True, "labelMatchers": 'job="llm"'}}})
    assert one(own, "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"].endswith('{job="llm"})')

    cpu = render({"autoscaling": {"enabled": True, "signal": "cpu", "keda": {"enabled": True}}})
    validate_manifests(cpu)
    [trigger] = one(cpu, "ScaledObject")["spec"]["triggers"]
    assert trigger == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "80"}}


@pytest.mark.model
async def test_autoscaling_and_gateway_name_gauges_the_service_exports(client) -> None:
    """Every metric the autoscalers and the endpoint picker are told to read, read from the real service's
    /metrics (the embedded model loaded): present, with a sample per model."""
    scraped = Scrape((await client.get("/metrics")).text)
    named: set[str] = set()
    keda = render({"autoscaling": {"enabled": True, "queue": {"runningPerPod": 8}, "keda": {"enabled": True}}})
    for trigger in one(keda, "ScaledObject")["spec"]["triggers"]:
        named |= metric_names_in(trigger["metadata"]["query"])
    hpa = render({"autoscaling": {"enabled": True, "queue": {"runningPerPod": 8}}})
    named |= {m["pods"]["metric"]["name"] for m in one(hpa, "HorizontalPodAutoscaler")["spec"]["metrics"]}
    # The flags docs/kubernetes.md tells the endpoint picker's operator to set.
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    picker_flags = dict(re.findall(r"--([a-z-]+-metric)=(\S+)", docs))
    assert set(picker_flags) == {
        "total-queued-requests-metric",
        "total-running-requests-metric",
        "kv-cache-usage-percentage-metric",
    }
    named |= set(picker_flags.values())
    assert named == {"llm_num_requests_waiting", "llm_num_requests_running", "llm_kv_cache_usage_ratio"}
    for name in named:
        assert scraped.matching(name, model="smollm2-135m-instruct"), f"{name} is not in /metrics"
    # The adapter's series query matches the series as Prometheus stores them (with namespace and pod labels).
    rules = load_values(CHART / "values.yaml")["autoscaling"]["prometheusAdapter"]["rules"]
    exported = {s.name for s in scraped.samples}
    served = {served for name in exported for served in adapter_metric_names(rules, name)}
    assert served == {"llm_num_requests_waiting", "llm_num_requests_running"}


# Inference gateway ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["deployment", "multi-node"])
def test_inference_pool_selects_exactly_the_serving_pods(mode: str) -> None:
    values: dict[str, Any] = {"inferencePool": {"enabled": True}}
    if mode == "multi-node":
        values.update(copy.deepcopy(MULTI_NODE))
    manifests = render(values)
    validate_manifests(manifests)
    pool = one(manifests, "InferencePool")
    service = one(manifests, "Service")
    selector = pool["spec"]["selector"]["matchLabels"]
    assert selector == service["spec"]["selector"], "the pool and the Service must name the same pods"
    if mode == "deployment":
        serving = [one(manifests, "Deployment")["spec"]["template"]]
        server = server_container(manifests)
    else:
        serving = [leader(manifests)]
        server = leader(manifests)["spec"]["containers"][0]
        # Ray workers serve no HTTP: the pool must not send them requests.
        assert not selector.items() <= worker(manifests)["metadata"]["labels"].items()
    for template in serving:
        assert selector.items() <= template["metadata"]["labels"].items()
    http = next(p for p in server["ports"] if p["name"] == "http")
    assert pool["spec"]["targetPorts"] == [{"number": http["containerPort"]}]
    assert pool["spec"]["endpointPickerRef"] == {
        "name": "demo-llm-inference-epp",
        "kind": "Service",
        "port": {"number": 9002},
        "failureMode": "FailClose",
    }
    assert "demo-llm-inference-epp:9002" in notes(values)


def test_inference_pool_values_and_tls() -> None:
    picker = {"name": "shared-epp", "port": 9003, "failureMode": "FailOpen"}
    pool = one(render({"inferencePool": {"enabled": True, "endpointPicker": picker}}), "InferencePool")
    assert pool["spec"]["endpointPickerRef"] == {
        "name": "shared-epp",
        "kind": "Service",
        "port": {"number": 9003},
        "failureMode": "FailOpen",
    }
    with pytest.raises(helm.HelmRenderError, match=r"inferencePool\.enabled needs tls\.enabled=false"):
        render({"inferencePool": {"enabled": True}, "tls": {"enabled": True, "secretName": "t"}})


def test_the_api_schemas_reject_what_the_apis_reject() -> None:
    """The checks above can fail: fields from older API versions, wrong types and unknown values are refused."""
    manifests = render(
        {
            **copy.deepcopy(MULTI_NODE),
            "inferencePool": {"enabled": True},
            "autoscaling": {"enabled": True, "keda": {"enabled": True}},
        }
    )
    pool, scaled, lws = (one(manifests, kind) for kind in ("InferencePool", "ScaledObject", "LeaderWorkerSet"))
    mistakes: list[tuple[dict[str, Any], str]] = []

    old_pool = copy.deepcopy(pool)  # v1alpha2's shape
    old_pool["spec"]["targetPortNumber"] = old_pool["spec"].pop("targetPorts")[0]["number"]
    mistakes.append((old_pool, "targetPortNumber"))
    flat_port = copy.deepcopy(pool)
    flat_port["spec"]["endpointPickerRef"]["portNumber"] = flat_port["spec"]["endpointPickerRef"].pop("port")["number"]
    mistakes.append((flat_port, "portNumber"))
    bare_selector = copy.deepcopy(pool)
    bare_selector["spec"]["selector"] = bare_selector["spec"]["selector"]["matchLabels"]
    mistakes.append((bare_selector, "matchLabels"))

    number_threshold = copy.deepcopy(scaled)
    number_threshold["spec"]["triggers"][0]["metadata"]["threshold"] = 2
    mistakes.append((number_threshold, "threshold"))
    no_query = copy.deepcopy(scaled)
    del no_query["spec"]["triggers"][0]["metadata"]["query"]
    mistakes.append((no_query, "query"))
    bad_behavior = copy.deepcopy(scaled)
    bad_behavior["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["policy"] = []
    mistakes.append((bad_behavior, "policy"))

    bad_restart = copy.deepcopy(lws)
    bad_restart["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "RecreateGroup"
    mistakes.append((bad_restart, "RecreateGroup"))
    stuck_rollout = copy.deepcopy(lws)
    stuck_rollout["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] = {"maxSurge": 0, "maxUnavailable": 0}
    mistakes.append((stuck_rollout, "rollingUpdateConfiguration"))
    bad_pod = copy.deepcopy(lws)
    bad_pod["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["command"] = "ray start"
    mistakes.append((bad_pod, "workerTemplate"))

    for manifest, named in mistakes:
        with pytest.raises(AssertionError, match=named):
            validate_custom(manifest, manifest["kind"])


# Multi-node -----------------------------------------------------------------------------------------------------


def test_multi_node_renders_a_leader_worker_set_instead_of_the_deployment() -> None:
    manifests = render(copy.deepcopy(MULTI_NODE))
    validate_manifests(manifests)
    assert "Deployment" not in kinds(manifests)
    lws = one(manifests, "LeaderWorkerSet")
    spec = lws["spec"]
    assert spec["replicas"] == 1
    assert spec["leaderWorkerTemplate"]["size"] == 2
    # One group is one engine: losing any pod, or a restart of the leader when the engine dies, recreates it.
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    # The leader turns ready only after the workers joined, so they must not wait for its readiness.
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["rolloutStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
    }
    lead, work = leader(manifests), worker(manifests)
    assert lead["metadata"]["labels"]["app.kubernetes.io/component"] == "leader"
    assert work["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    [server] = lead["spec"]["containers"]
    [ray_worker] = work["spec"]["containers"]

    # The leader runs this service with vLLM's Ray backend at tensor 8 x pipeline 2 over the group's 16 GPUs.
    env = container_env(manifests, server)
    assert env["LLM_TENSOR_PARALLEL_SIZE"] == "8" and env["LLM_PIPELINE_PARALLEL_SIZE"] == "2"
    assert env["LLM_DISTRIBUTED_EXECUTOR_BACKEND"] == "ray" and env["LLM_BACKEND"] == "vllm"
    settings, warnings = load_settings({**env, "LLM_ALLOWED_MODELS": "org/model"})
    assert warnings == [] and (settings.tensor_parallel_size, settings.pipeline_parallel_size) == (8, 2)
    ray_port = next(p["containerPort"] for p in server["ports"] if p["name"] == "ray")
    assert server["command"][:2] == ["sh", "-c"]
    head, serve = server["command"][2].split(" && ")
    assert head.startswith(f"ray start --head --port={ray_port}") and serve == "exec llm-inference serve"
    assert ray_worker["command"][2].startswith(f"exec ray start --address=${{LWS_LEADER_ADDRESS}}:{ray_port} --block")
    for pod in (lead, work):
        [container] = pod["spec"]["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert container["image"].startswith("llm-inference-cuda:")
        # Each pod loads its layers from the same HF_HOME path: the model is fetched there first.
        [init] = pod["spec"]["initContainers"]
        assert init["command"] == ["llm-inference", "fetch-model"] and init["envFrom"] == container["envFrom"]

    # The Service, the HPA and the notes follow the leaders.
    assert one(manifests, "Service")["spec"]["selector"]["app.kubernetes.io/component"] == "leader"
    scaled = render({**copy.deepcopy(MULTI_NODE), "autoscaling": {"enabled": True}})
    validate_manifests(scaled)
    assert one(scaled, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": lws["metadata"]["name"],
    }
    assert "replicas" not in one(scaled, "LeaderWorkerSet")["spec"]
    assert "get leaderworkerset/demo-llm-inference" in notes(copy.deepcopy(MULTI_NODE))


def test_multi_node_leader_probes_and_drain_are_the_deployments() -> None:
    """The leader is the service: the same probes and preStop as the Deployment's pod (test_chart_probes.py runs
    those against a real process). The workers hold the leader's streams' layers, so they outlive its drain."""
    single = server_container(render({"gpu": {"enabled": True}}))
    manifests = render(copy.deepcopy(MULTI_NODE))
    [server] = leader(manifests)["spec"]["containers"]
    for field in ("startupProbe", "readinessProbe", "livenessProbe", "lifecycle", "envFrom", "securityContext"):
        assert server[field] == single[field], field
    assert server["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/health/live"
    grace = leader(manifests)["spec"]["terminationGracePeriodSeconds"]
    assert grace == pod_spec(render({"gpu": {"enabled": True}}))["terminationGracePeriodSeconds"]

    [ray_worker] = worker(manifests)["spec"]["containers"]
    assert not {"startupProbe", "readinessProbe", "livenessProbe", "ports"} & set(ray_worker)
    pre_stop = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = float(container_env(manifests, server)["LLM_SHUTDOWN_GRACE_SECONDS"])
    worker_wait = int(ray_worker["lifecycle"]["preStop"]["exec"]["command"][1])
    # SIGTERM reaches a deleted group's Ray workers only after the leader's preStop, drain and Granian's margin.
    assert worker_wait >= pre_stop + drain + 5
    assert worker(manifests)["spec"]["terminationGracePeriodSeconds"] == grace > worker_wait


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"config": {"LLM_TENSOR_PARALLEL_SIZE": 8, "LLM_PIPELINE_PARALLEL_SIZE": 1}},
            r"config.LLM_TENSOR_PARALLEL_SIZE \(8\) x config.LLM_PIPELINE_PARALLEL_SIZE \(1\) = 8 must equal "
            r"multiNode.size \(2\) x gpu.count \(8\) = 16",
        ),
        ({"gpu": {"enabled": False}}, "multiNode.enabled needs gpu.enabled"),
        ({"config": {"LLM_DISTRIBUTED_EXECUTOR_BACKEND": "mp"}}, "needs config.LLM_DISTRIBUTED_EXECUTOR_BACKEND ray"),
        ({"config": {"LLM_BACKEND": "llamacpp"}}, "needs config.LLM_BACKEND vllm or auto"),
    ],
)
def test_multi_node_refuses_a_group_its_engine_cannot_use(values: dict[str, Any], message: str) -> None:
    merged = copy.deepcopy(MULTI_NODE)
    for key, value in values.items():
        merged[key] = {**merged.get(key, {}), **value}
    with pytest.raises(helm.HelmRenderError, match=message):
        render(merged)


def test_multi_node_network_policy_lets_the_group_talk() -> None:
    manifests = render({**copy.deepcopy(MULTI_NODE), "networkPolicy": {"enabled": True, "restrictEgress": True}})
    validate_manifests(manifests)
    policy = one(manifests, "NetworkPolicy")["spec"]
    release = {"matchLabels": {"app.kubernetes.io/name": "llm-inference", "app.kubernetes.io/instance": "demo"}}
    assert {"from": [{"podSelector": release}]} in policy["ingress"]
    assert {"to": [{"podSelector": release}]} in policy["egress"]
    single = one(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")["spec"]
    assert all("ports" in rule for rule in single["ingress"]), "one pod: only the API port stays open"


# Values ---------------------------------------------------------------------------------------------------------


def test_ci_values_for_a_multi_node_model_behind_a_gateway() -> None:
    values = load_values(MULTI_NODE_VALUES)
    manifests = render(values)
    validate_manifests(manifests)
    report = helm.lint(CHART, values, strict=True, kube_version="v1.27.0")
    assert not [m for m in report["messages"] if m["severity"] >= 2] and not report["errors"], report
    assert {"LeaderWorkerSet", "InferencePool", "ScaledObject", "ServiceMonitor"} <= kinds(manifests)
    assert not {"Deployment", "HorizontalPodAutoscaler"} & kinds(manifests)
    assert leader(manifests)["spec"]["containers"][0]["image"] == "registry.example.com/llm-inference-cuda-ray:0.1.0"


def test_bad_scaling_values_are_rejected_by_the_schema() -> None:
    bad = load_values(Path(__file__).with_name("bad-scaling-values.yaml"))
    message = schema_errors(bad)
    for mistake in (
        "/autoscaling/signal",
        "/autoscaling/queue/waitingPerPod",
        "/autoscaling/keda/serverAddress",
        "pollingIntervall",
        "/inferencePool/endpointPicker/failureMode",
        "/multiNode/size",
    ):
        assert mistake in message, f"{mistake} not reported:\n{message}"
