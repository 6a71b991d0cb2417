"""The chart's PrometheusRule: its shape, and its alerts checked and unit-tested by Debian's promtool.

The rendered spec.groups is written out as a plain Prometheus rules file, the same rules the operator would
load; tests/deploy/promtool/*_test.yaml feed them series and say which alerts fire when, with which labels and
annotations. Every alert the chart can render has a case there that fires."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.deploy.chart import PRODUCTION_VALUES, kinds, load_values, notes, one, render
from tests.deploy.prometheus import (
    PROMTOOL_TESTS,
    alerting_rules,
    promtool,
    promtool_values,
    write_rules_file,
)

ALERTS = {
    "notReady": "LLMInferenceNotReady",
    "engineDead": "LLMInferenceEngineDead",
    "engineStalled": "LLMInferenceEngineStalled",
    "queueSaturated": "LLMInferenceQueueSaturated",
    "timeToFirstTokenHigh": "LLMInferenceTimeToFirstTokenHigh",
    "serverErrors": "LLMInferenceServerErrors",
    "kvCacheNearFull": "LLMInferenceKvCacheNearFull",
}
# What a Prometheus rules file allows in an alerting rule (promtool check rules refuses anything else).
RULE_FIELDS = {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}


def test_the_rule_is_off_by_default_and_renders_for_the_operator() -> None:
    assert "PrometheusRule" not in kinds(render())
    values = promtool_values(prometheusRule={"labels": {"release": "kube-prometheus-stack"}})
    rule = one(render(values), "PrometheusRule")
    assert (rule["apiVersion"], rule["metadata"]["name"]) == ("monitoring.coreos.com/v1", "demo-llm-inference")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
    [group] = rule["spec"]["groups"]
    assert set(group) == {"name", "rules"}
    assert {r["alert"] for r in group["rules"]} == set(ALERTS.values())
    for alert in group["rules"]:
        assert set(alert) <= RULE_FIELDS, alert
        assert {"severity", "team"} <= set(alert["labels"]), alert
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}, alert
        assert alert["annotations"]["runbook_url"].endswith("#" + alert["alert"].lower())
        # Every series the alert reads is this release's: the default selector, as the ServiceMonitor labels them.
        assert 'job="demo-llm-inference", namespace="llm"' in alert["expr"]


def test_production_values_ship_the_alerts_with_the_hpa_clause() -> None:
    rule = one(render(load_values(PRODUCTION_VALUES)), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [queue] = [r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "LLMInferenceQueueSaturated"]
    assert 'kube_horizontalpodautoscaler_spec_max_replicas{namespace="llm", ' in queue["expr"]


def test_each_alert_turns_off_and_the_selector_and_thresholds_come_from_values() -> None:
    for key, name in ALERTS.items():
        names = {r["alert"] for r in alerting_rules(promtool_values(prometheusRule={key: {"enabled": False}}))}
        assert names == set(ALERTS.values()) - {name}
    values = promtool_values(
        prometheusRule={
            "selector": 'service="llm", namespace="serving"',
            "runbookUrl": "",
            "kvCacheNearFull": {"enabled": True, "ratioAbove": 0.8, "for": "1h", "severity": "info"},
            "queueSaturated": {
                "enabled": True,
                "waitingAbove": 0,
                "for": "10m",
                "severity": "warning",
                "horizontalPodAutoscaler": "llm-hpa",
            },
        }
    )
    rules = {r["alert"]: r for r in alerting_rules(values)}
    kv = rules["LLMInferenceKvCacheNearFull"]
    assert kv["expr"] == 'llm_kv_cache_usage_ratio{service="llm", namespace="serving"} > 0.8'
    assert (kv["for"], kv["labels"]["severity"]) == ("1h", "info")
    assert all("runbook_url" not in r["annotations"] for r in rules.values())
    assert 'horizontalpodautoscaler=~"llm-hpa"' in rules["LLMInferenceQueueSaturated"]["expr"]


def test_promtool_checks_the_rules_and_every_alert_passes_its_unit_tests(tmp_path: Path) -> None:
    write_rules_file(promtool_values(), tmp_path / "alerts.rules.yaml")
    write_rules_file(promtool_values(autoscaling={"enabled": False}), tmp_path / "alerts-fixed-replicas.rules.yaml")
    # The shipped defaults, as an operator turns the rule on and nothing else.
    write_rules_file({"prometheusRule": {"enabled": True}}, tmp_path / "defaults.rules.yaml")
    checked = promtool("check", "rules", *sorted(tmp_path.glob("*.rules.yaml")))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("SUCCESS: 7 rules found") == 3, checked.stdout

    unit_tests = sorted(PROMTOOL_TESTS.glob("*_test.yaml"))
    for unit_test in unit_tests:
        shutil.copy(unit_test, tmp_path)
    tested = promtool("test", "rules", *(u.name for u in unit_tests), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(unit_tests), tested.stdout

    # Each alert has a case where it fires (an expected alert), not only cases where it stays quiet.
    fired = {
        case["alertname"]
        for unit_test in unit_tests
        for test in yaml.safe_load(unit_test.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == set(ALERTS.values())


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    """The unit tests can fail: the same case expecting the not-ready alert a minute early is refused."""
    write_rules_file(promtool_values(), tmp_path / "alerts.rules.yaml")
    unit_test = yaml.safe_load((PROMTOOL_TESTS / "alerts_test.yaml").read_text())
    not_ready = unit_test["tests"][0]
    firing = next(case for case in not_ready["alert_rule_test"] if case["exp_alerts"])
    not_ready["alert_rule_test"] = [{**firing, "eval_time": "11m"}]
    unit_test["tests"] = [not_ready]
    (tmp_path / "early_test.yaml").write_text(yaml.safe_dump(unit_test))
    tested = promtool("test", "rules", "early_test.yaml", cwd=tmp_path)
    assert tested.returncode == 1 and "LLMInferenceNotReady" in tested.stdout + tested.stderr, tested.stdout


def test_notes_name_the_rule_and_what_its_selector_assumes() -> None:
    text = notes({"prometheusRule": {"enabled": True}})
    assert "Alerts: PrometheusRule demo-llm-inference (its series selector assumes the ServiceMonitor" in text
    monitored = notes({"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}})
    assert "Alerts: PrometheusRule demo-llm-inference\n" in monitored
    assert "kube-state-metrics" in notes({"prometheusRule": {"enabled": True}, "autoscaling": {"enabled": True}})
    assert "Alerts:" not in notes()
