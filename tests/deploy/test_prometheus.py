"""Debian's real Prometheus scrapes a real Granian process on the embedded model, loads the chart's alerts as
its rules file, and answers every Grafana dashboard query and every alert expression.

What "returns data" means here, honestly:
- A dashboard query returns at least one series: after the load below, every panel has something to draw.
- An alert's full expression is a condition: on a healthy service it must evaluate without error and (but for
  the latency alert, whose answer would depend on this machine's speed) stay inactive. What must return data is
  its value: the expression taken apart at its comparisons with a constant, its set operators (and, or, unless)
  and its arithmetic, down to the parts that read series. Each part returns series, except two kinds, each
  checked for what it is instead: kube-state-metrics' HPA series (no cluster here: the promtool unit tests give
  them as input) only evaluate without error, and the 5xx share's numerator must return nothing (the run is
  5xx-free, which this checks) while the same selector without its status matcher does return series.
- Prometheus itself evaluates the rules file every second: each rule is healthy, and the not-ready alert is
  seen pending while the model loads, then inactive once it answers.

The scrape target carries `namespace` and `pod` labels, as a ServiceMonitor's scrape gives them, and the job
is named after the Service: the chart's default selector then picks this release's series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml

from llm_inference.model_spec import embedded_model_path
from tests.api.sse import parse_events
from tests.deploy.chart import RELEASE
from tests.deploy.prometheus import PROMETHEUS, alerting_rules, require, write_rules_file
from tests.fake_hub import FakeHub
from tests.polling import wait_until
from tests.server import ServerProcess, free_port
from tests.telemetry.dashboards import DASHBOARDS, queries, substitute

pytestmark = pytest.mark.model

JOB = f"{RELEASE}-llm-inference"  # the Service's name, which a ServiceMonitor's scrape uses as the job
TARGET_LABELS = {"namespace": "llm", "pod": f"{JOB}-0"}
HUB_REPO = "test-org/smollm2-scraped"
MODEL = f"{HUB_REPO}:{embedded_model_path().name}"
VALUES = {"prometheusRule": {"enabled": True}, "autoscaling": {"enabled": True}}
# Not exported by the service: kube-state-metrics' series about the HPA (the queue alert's "at max replicas").
EXTERNAL_METRICS = {
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
}
# Time to first token against a 2 s target depends on how fast this machine is: its state is not asserted.
TIMING_ALERTS = {"LLMInferenceTimeToFirstTokenHigh"}
SET_OPERATORS = {"and", "or", "unless"}
COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
ARITHMETIC = {"+", "-", "*", "/", "%", "^", "atan2"}
MATCH_OPERATORS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


@dataclass
class Prometheus:
    url: str
    log: Path

    def get(self, path: str, **params: str) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=30)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{path} {params}: {response.text}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] in {"vector", "scalar"}, (expr, data)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else [data["result"]]
        return result

    def alert_states(self) -> dict[str, str]:
        [group] = self.get("/api/v1/rules", type="alert")["groups"]
        return {rule["name"]: rule["state"] for rule in group["rules"]}

    def wait(
        self, what: str, probe: Callable[[], Any], until: Callable[[Any], object] | None = None, timeout: float = 60
    ) -> None:
        """Until what `probe` returns is truthy, or satisfies `until`: Prometheus scrapes and evaluates every second."""
        wait_until(
            probe,
            until=until,
            timeout=timeout,
            what=f"Prometheus: {what}",
            interval=0.2,
            details=lambda: f"its log:\n{self.log.read_text()}",
        )


def _config(rules: Path, target: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [target], "labels": TARGET_LABELS}]},
        ],
    }


def _start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], Prometheus]:
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(_config(write_rules_file(VALUES, tmp / "alerts.rules.yaml"), target)))
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                require(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        assert process.poll() is None, f"prometheus exited: {log.read_text()}"
        try:
            return httpx.get(prometheus.url + "/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    prometheus.wait("start", ready)
    return process, prometheus


def _load(url: str, model: str) -> None:
    """A little traffic on both surfaces, streamed and not, two at once (one decode slot: one waits), one 404."""
    chat = {"model": model, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4}
    generated: list[httpx.Response] = []

    def generate() -> None:
        generated.append(
            httpx.post(url + "/api/generate", json={"prompt": "Once upon a time", "max_tokens": 4}, timeout=120)
        )

    together = [threading.Thread(target=generate) for _ in range(2)]
    for thread in together:
        thread.start()
    stream = httpx.post(url + "/api/chat/stream", json=chat, timeout=120)
    completion = httpx.post(url + "/v1/chat/completions", json=chat, timeout=120)
    chunks = httpx.post(url + "/v1/chat/completions", json={**chat, "stream": True}, timeout=120)
    for thread in together:
        thread.join()
    answers = [*generated, stream, completion, chunks]
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert parse_events(stream.text)[-1]["type"] == "done"
    assert chunks.text.rstrip().endswith("data: [DONE]")
    unknown = httpx.post(url + "/api/generate", json={"prompt": "Hi", "model": "no/such"})
    assert unknown.status_code == 404


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    require(PROMETHEUS)
    tmp = tmp_path_factory.mktemp("prometheus")
    with FakeHub(HUB_REPO) as hub:
        env = {
            "LLM_ALLOWED_MODELS": MODEL,
            **hub.environment(tmp / "hf"),
            "LLM_MAX_CONCURRENT_REQUESTS": "1",
            # One thread: a decode step then never waits on a descheduled sibling thread on a busy test machine.
            "LLM_THREADS": "1",
        }
        with ServerProcess(env, log_path=tmp / "server.log") as server:
            server.wait_for("/health/live", 200)
            process, prometheus = _start_prometheus(tmp, f"127.0.0.1:{server.port}")
            try:
                # The hub holds the download back: the model is loading, and Prometheus sees it not ready.
                prometheus.wait(
                    "LLMInferenceNotReady pending while the model loads",
                    prometheus.alert_states,
                    lambda states: states.get("LLMInferenceNotReady") == "pending",
                )
                # ... through its own gauges, not only because a scrape failed (`up == 0` would page as well).
                assert prometheus.query(f'llm_ready{{job="{JOB}"}} == 0')
                # The registry reports the held-back hub download as "downloading", then "loading".
                assert prometheus.query(f'llm_model_state{{job="{JOB}", state=~"downloading|loading"}} == 1')
                hub.release.set()
                server.wait_for("/health/ready", 200, timeout=180)
                _load(server.url, MODEL)
                loaded = time.time()
                # Two scrapes after the load, so that rate() over the new series has two samples.
                prometheus.wait(
                    "two scrapes after the load",
                    lambda: prometheus.query(f'timestamp(up{{job="{JOB}"}})'),
                    lambda scrapes: any(float(s["value"][1]) > loaded + 1.5 for s in scrapes),
                )
                yield prometheus
            finally:
                process.terminate()
                process.wait(30)
    shutil.rmtree(tmp / "data", ignore_errors=True)


def test_every_dashboard_query_returns_data(prometheus: Prometheus) -> None:
    assert DASHBOARDS
    ran = 0
    for path in DASHBOARDS:
        for where, expr, result_labels in queries(json.loads(path.read_text())):
            # Grafana's $__rate_interval is four scrape intervals at least; a minute covers this whole run.
            result = prometheus.query(substitute(expr, __rate_interval="1m"))
            assert result, f"{path.name} / {where}: no data for {expr!r}"
            for label in result_labels:
                assert all(label in series["metric"] for series in result), f"{path.name} / {where}: no {label}"
            ran += 1
    assert ran >= 30


def _parts(node: Any) -> list[Any]:
    """An expression's parts that read series: split at set operators, comparisons and arithmetic."""
    if isinstance(node, promql_parser.ParenExpr):
        return _parts(node.expr)
    if isinstance(node, promql_parser.BinaryExpr) and str(node.op) in SET_OPERATORS | COMPARISONS | ARITHMETIC:
        return [part for side in (node.lhs, node.rhs) for part in _parts(side)]
    if isinstance(node, promql_parser.NumberLiteral):
        return []
    return [node]


def _selectors(node: Any) -> list[Any]:
    found: list[Any] = []

    def visit(child: Any) -> bool:
        if isinstance(child, promql_parser.VectorSelector):
            found.append(child)
        return True

    promql_parser.walk(node, visit)
    return found


def _selects_5xx(selector: Any) -> bool:
    return any(m.name == "status" and m.value == "5.." for m in selector.matchers.matchers)


def test_every_alert_expression_evaluates_and_its_parts_return_data(prometheus: Prometheus) -> None:
    rules = alerting_rules(VALUES)
    assert len(rules) == 7
    for rule in rules:
        prometheus.query(rule["expr"])  # the whole condition: no error (whether it holds is the next test's)
        parts = _parts(promql_parser.parse(rule["expr"]))
        assert parts, rule
        for part in parts:
            selectors = _selectors(part)
            result = prometheus.query(str(part))
            names = {s.name for s in selectors}
            if names <= EXTERNAL_METRICS:
                continue
            if any(_selects_5xx(s) for s in selectors):
                assert result == [], f"{rule['alert']}: the run had 5xx answers: {result}"
                for selector in selectors:
                    matchers = [
                        f"{m.name}{MATCH_OPERATORS[str(m.op)]}{json.dumps(m.value)}"
                        for m in selector.matchers.matchers
                        if m.name != "status"
                    ]
                    relaxed = f"{selector.name}{{{', '.join(matchers)}}}"
                    assert prometheus.query(relaxed), f"{rule['alert']}: no {relaxed}"
                continue
            assert result, f"{rule['alert']}: no data for {part} (of {rule['expr']!r})"
    # Each metric the alerts read, as this release's series (the selector the chart rendered by default).
    read = {s.name for rule in rules for s in _selectors(promql_parser.parse(rule["expr"]))}
    assert read - EXTERNAL_METRICS == {
        "llm_ready",
        "up",
        "llm_engine_state",
        "llm_num_requests_waiting",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "http_requests_total",
        "llm_kv_cache_usage_ratio",
    }


def test_prometheus_evaluates_the_rules_file_and_nothing_fires_on_a_healthy_service(prometheus: Prometheus) -> None:
    [group] = prometheus.get("/api/v1/rules")["groups"]
    assert group["file"].endswith("alerts.rules.yaml") and len(group["rules"]) == 7
    for rule in group["rules"]:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule
    # Ready again after the load (one late scrape could still count as `up == 0` for a moment: hence the wait).
    prometheus.wait(
        "every alert inactive",
        prometheus.alert_states,
        lambda states: all(state == "inactive" for name, state in states.items() if name not in TIMING_ALERTS),
        timeout=30,
    )
    [ready] = prometheus.query(f'llm_ready{{job="{JOB}"}}')
    assert ready["metric"] | TARGET_LABELS == ready["metric"] and ready["value"][1] == "1"
    engines = prometheus.query(f'llm_engine_state{{job="{JOB}", state="healthy"}} == 1')
    assert [e["metric"]["model"] for e in engines] == [MODEL]
