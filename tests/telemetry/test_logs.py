"""Structured logs: one JSON object per line, trace ids inside requests, one access line per request, and
no prompt, completion or credential in any line at DEBUG level."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from llm_inference.telemetry.logging import JsonFormatter, PrettyFormatter
from tests.api.sse import joined_text, parse_events
from tests.polling import wait_until
from tests.telemetry.conftest import HF_TOKEN, Observed


def _access_lines(observed: Observed, path: str) -> list[dict]:
    return [e for e in observed.log_entries() if e["logger"] == "llm_inference.access" and e.get("route") == path]


def _wait_for_access_line(observed: Observed, path: str, count: int) -> list[dict]:
    """The access lines of `path`, once there are `count`: the server writes a request's line after its response
    has gone out, so it may still be missing when the client has the response."""
    return wait_until(
        lambda: _access_lines(observed, path),
        until=lambda lines: len(lines) >= count,
        timeout=60,
        what=f"{count} access line(s) for {path}",
    )


def _wait_for_request_line(observed: Observed, path: str, request_id: str) -> dict[str, Any]:
    """The access line of `path` that carries `request_id`, once the server has written it."""
    [*_, line] = wait_until(
        lambda: [e for e in _access_lines(observed, path) if e.get("request_id") == request_id],
        timeout=60,
        what=f"the access line for {path} with request_id {request_id!r}",
        details=lambda: f"the last access lines for {path}: {_access_lines(observed, path)[-3:]}",
    )
    return line


@pytest.mark.model
def test_every_line_is_one_json_object_with_the_required_fields(observed: Observed) -> None:
    # Fails on any line that is not JSON, Granian's own included. The access line of the fixture's readiness
    # probe is written after its answer: waited for.
    entries = wait_until(
        observed.log_entries,
        until=lambda entries: {"_granian", "llm_inference.access"} <= {e.get("logger") for e in entries},
        timeout=60,
        what="log lines from Granian and from the access log",
    )
    assert entries
    for entry in entries:
        assert {"timestamp", "level", "logger", "message"} <= set(entry), entry
    loggers = {entry["logger"] for entry in entries}
    assert "_granian" in loggers and "llm_inference.access" in loggers


@pytest.mark.model
def test_an_access_line_per_request_with_model_tokens_and_the_trace(observed: Observed) -> None:
    traceparent_trace = secrets.token_hex(16)
    answer = httpx.post(
        observed.url + "/api/generate",
        json={"prompt": "Two plus two is", "max_tokens": 3},
        headers={"traceparent": f"00-{traceparent_trace}-{secrets.token_hex(8)}-01"},
        timeout=300,
    )
    assert answer.status_code == 200
    # This request's own line, by the id its response carries: another test's request may be logged later.
    line = _wait_for_request_line(observed, "/api/generate", answer.headers["x-request-id"])
    assert line["message"] == "POST /api/generate 200"
    assert line["level"] == "INFO" and line["method"] == "POST" and line["status"] == 200
    assert 0 < line["duration_seconds"] < 300
    assert line["model"] == observed.model
    assert line["prompt_tokens"] == answer.json()["usage"]["prompt_tokens"]
    assert line["completion_tokens"] == answer.json()["usage"]["completion_tokens"]
    assert line["finish_reason"] == answer.json()["finish_reason"]
    # The line is written inside the server span: its ids are that span's, in the caller's trace.
    [server_span] = [
        s
        for s in observed.receiver.wait_for(
            lambda spans: any(s.trace_id == traceparent_trace and s.name == "POST /api/generate" for s in spans)
        )
        if s.trace_id == traceparent_trace and s.name == "POST /api/generate"
    ]
    assert line["trace_id"] == traceparent_trace and line["span_id"] == server_span.span_id


@pytest.mark.model
def test_errors_and_probes_are_logged_too(observed: Observed) -> None:
    missing = httpx.get(observed.url + "/no/such/route", timeout=30)
    assert missing.status_code == 404
    line = _wait_for_request_line(observed, "unmatched", missing.headers["x-request-id"])
    assert line["status"] == 404 and line["level"] == "INFO" and "model" not in line
    probes = _wait_for_access_line(observed, "/health/ready", 1)  # the fixture's probes, logged after their answers
    assert probes and all(e["level"] == "DEBUG" for e in probes)  # probes every few seconds: debug only


@pytest.mark.model
def test_no_prompt_completion_or_secret_in_any_log_line(observed: Observed) -> None:
    prompt = "Violet-narwhal-cipher 4417 asks about the weather"
    api_key = "sk-observability-" + secrets.token_hex(12)
    headers = {"Authorization": f"Bearer {api_key}", "X-API-Key": api_key}
    completions = []
    answer = httpx.post(
        observed.url + "/api/generate", json={"prompt": prompt, "max_tokens": 12}, headers=headers, timeout=300
    )
    completions.append(answer.json()["text"])
    chat = httpx.post(
        observed.url + "/api/chat",
        json={
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}],
            "max_tokens": 12,
        },
        headers=headers,
        timeout=300,
    )
    completions.append(chat.json()["message"]["content"])
    stream = httpx.post(
        observed.url + "/api/chat/stream",
        json={"messages": [{"role": "user", "content": prompt}], "max_tokens": 12},
        headers=headers,
        timeout=300,
    )
    completions.append(joined_text(parse_events(stream.text)))
    # Every line these requests make is in the log before it is searched: their access lines come last.
    for route, response in (("/api/generate", answer), ("/api/chat", chat), ("/api/chat/stream", stream)):
        _wait_for_request_line(observed, route, response.headers["x-request-id"])

    logs = observed.log_text()
    assert "Violet-narwhal" not in logs and "narwhal" not in logs
    assert api_key not in logs and "sk-observability" not in logs
    assert HF_TOKEN not in logs and HF_TOKEN[:12] not in logs
    for completion in completions:
        if len(completion.strip()) >= 12:  # long enough not to occur in a log line by chance
            assert completion not in logs, completion


def test_formatters_add_the_current_trace_and_span_ids() -> None:
    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("llm_inference.test", logging.INFO, __file__, 1, "inside %s", ("a span",), None)
    record.model = "m"  # structured context passed with extra=
    outside = json.loads(JsonFormatter().format(record))
    assert "trace_id" not in outside and outside["model"] == "m"
    with tracer.start_as_current_span("request") as span:
        context = span.get_span_context()
        inside = json.loads(JsonFormatter().format(record))
        pretty = PrettyFormatter().format(record)
    assert inside["message"] == "inside a span" and inside["level"] == "INFO"
    assert inside["logger"] == "llm_inference.test" and inside["timestamp"].endswith("+00:00")
    assert inside["trace_id"] == f"{context.trace_id:032x}" and inside["span_id"] == f"{context.span_id:016x}"
    assert f"trace_id={context.trace_id:032x}" in pretty


@pytest.mark.model
def test_every_response_carries_a_request_id_also_in_its_access_line_and_span(observed: Observed) -> None:
    caller_id = "gw-7f3a9c1e-0b2d-4e5f"
    answered = httpx.post(
        observed.url + "/api/generate",
        json={"prompt": "Hi", "max_tokens": 2},
        headers={"X-Request-ID": caller_id},
        timeout=300,
    )
    assert answered.status_code == 200 and answered.headers["x-request-id"] == caller_id
    line = _wait_for_request_line(observed, "/api/generate", caller_id)
    assert line["status"] == 200
    [server] = [
        s
        for s in observed.receiver.wait_for(
            lambda spans: any(s.attributes.get("http.request.id") == caller_id for s in spans)
        )
        if s.attributes.get("http.request.id") == caller_id
    ]
    assert server.name == "POST /api/generate"

    # A header that is not a plain token is not echoed into logs: the request gets an id of its own.
    made = set()
    for headers in ({"X-Request-ID": "two words"}, {"X-Request-ID": "x" * 129}, {}):
        for response in (
            httpx.post(observed.url + "/api/generate", content=b"{", headers=headers, timeout=60),
            httpx.get(observed.url + "/nowhere", headers=headers, timeout=60),
            httpx.get(observed.url + "/health/live", headers=headers, timeout=60),
        ):
            assert response.status_code in {400, 404, 200}
            assert len(response.headers.get_list("x-request-id")) == 1, response.headers
            made.add(response.headers["x-request-id"])
    assert len(made) == 9 and all(len(request_id) == 32 for request_id in made)  # new ids, all different
