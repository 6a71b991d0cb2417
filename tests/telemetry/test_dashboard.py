"""The Grafana dashboards under the Helm chart query only what the service really exports: every PromQL
expression is parsed, and each metric and label it names must be in a scrape of the running service."""

from __future__ import annotations

import json
from typing import Any

import httpx
import promql_parser
import pytest

from tests.api.sse import parse_events
from tests.telemetry.conftest import Observed
from tests.telemetry.dashboards import DASHBOARDS, queries, substitute

# Labels Prometheus itself adds to every series it scrapes.
TARGET_LABELS = {"job", "instance"}


def _walk(expr: str) -> tuple[list[Any], set[str]]:
    """The vector selectors of an expression, and the labels its aggregations group by."""
    selectors: list[Any] = []
    grouping: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            selectors.append(node)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        return True

    promql_parser.walk(promql_parser.parse(substitute(expr)), visit)
    return selectors, grouping


def _exercise(observed: Observed) -> None:
    """Real requests, so every labelled series the dashboards chart has samples."""
    generate = httpx.post(observed.url + "/api/generate", json={"prompt": "Hello", "max_tokens": 3}, timeout=300)
    assert generate.status_code == 200
    stream = httpx.post(
        observed.url + "/api/chat/stream",
        json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
        timeout=300,
    )
    assert parse_events(stream.text)[-1]["type"] == "done"
    assert httpx.post(observed.url + "/api/generate", json={"prompt": "x", "model": "no/such"}).status_code == 404


@pytest.mark.model
def test_every_dashboard_query_names_exported_metrics_and_labels(observed: Observed) -> None:
    assert DASHBOARDS, "no dashboard under helm/llm-inference/dashboards"
    _exercise(observed)
    scraped = observed.scrape()
    labels_of: dict[str, set[str]] = {}
    for sample in scraped.samples:
        labels_of.setdefault(sample.name, set()).update(sample.labels)
    used: set[str] = set()
    for path in DASHBOARDS:
        for where, expr, result_labels in queries(json.loads(path.read_text())):
            selectors, grouping = _walk(expr)
            assert selectors, f"{path.name} / {where}: no metric in {expr!r}"
            available = set(TARGET_LABELS)
            for selector in selectors:
                name = selector.name
                assert name in labels_of, f"{path.name} / {where}: {name} is not exported ({expr!r})"
                used.add(name)
                available |= labels_of[name]
                for matcher in selector.matchers.matchers:
                    assert matcher.name in labels_of[name] | TARGET_LABELS, (
                        f"{path.name} / {where}: {name} has no label {matcher.name!r}"
                    )
                    if matcher.op == promql_parser.MatchOp.Equal:
                        assert scraped.matching(name, **{matcher.name: matcher.value}), (
                            f"{path.name} / {where}: no {name} series with {matcher.name}={matcher.value!r}"
                        )
            missing = (grouping | result_labels) - available
            assert not missing, f"{path.name} / {where}: labels {missing} are on none of {expr!r}'s metrics"
    # The panels an operator needs: traffic by status, TTFT / TPOT percentiles, tokens/s, running/waiting, and
    # what the alerts read (readiness, engine health, KV cache).
    assert {
        "http_requests_total",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_server_time_per_output_token_seconds_bucket",
        "gen_ai_server_request_duration_seconds_bucket",
        "llm_generation_tokens_total",
        "llm_prompt_tokens_total",
        "llm_num_requests_running",
        "llm_num_requests_waiting",
        "llm_request_queue_time_seconds_bucket",
        "llm_ready",
        "llm_engine_state",
        "llm_kv_cache_usage_ratio",
    } <= used


def test_a_query_naming_a_metric_the_service_lacks_is_caught() -> None:
    # The check above relies on the parser finding every selector, including ones nested in functions.
    selectors, grouping = _walk(
        "histogram_quantile(0.9, sum by (le, model) (rate(vllm:time_to_first_token_seconds_bucket"
        '{model=~"$model"}[$__rate_interval]))) / on (model) group_left sum by (model) (llm_info)'
    )
    assert [s.name for s in selectors] == ["vllm:time_to_first_token_seconds_bucket", "llm_info"]
    assert grouping == {"le", "model"}
