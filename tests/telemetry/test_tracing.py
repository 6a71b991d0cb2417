"""OTLP traces from a real Granian process to real receivers (gRPC and HTTP/protobuf) in the test process:
the server span continues the caller's W3C trace, the inference span follows the GenAI conventions."""

from __future__ import annotations

import json
import secrets
import socket
import time
from pathlib import Path

import httpx
import pytest

from llm_inference.app import create_app
from llm_inference.telemetry.tracing import ENDPOINT_VARIABLES, tracer_provider
from tests.api.sse import joined_text, parse_events
from tests.conftest import make_settings
from tests.otlp_receiver import HttpReceiver, Span
from tests.server import ServerProcess
from tests.telemetry.conftest import SERVICE_NAME, Observed


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def _trace(spans: list[Span], trace_id: str) -> dict[str, Span]:
    return {span.name: span for span in spans if span.trace_id == trace_id}


@pytest.mark.model
def test_a_request_continues_the_callers_trace_with_a_genai_child_span(observed: Observed) -> None:
    traceparent, trace_id, caller_span = _traceparent()
    response = httpx.post(
        observed.url + "/api/chat",
        json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 5, "temperature": 0.5, "top_p": 0.8},
        headers={"traceparent": traceparent},
        timeout=300,
    )
    assert response.status_code == 200
    usage = response.json()["usage"]
    names = {"POST /api/chat", f"chat {observed.model}"}
    spans = _trace(observed.receiver.wait_for(lambda s: names <= set(_trace(s, trace_id))), trace_id)

    server = spans["POST /api/chat"]
    assert server.kind == "SPAN_KIND_SERVER"
    assert server.parent_span_id == caller_span  # the caller's span is the parent: one trace end to end
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.route"] == "/api/chat"
    assert server.attributes["http.response.status_code"] == 200
    assert server.resource["service.name"] == SERVICE_NAME  # LLM_SERVICE_NAME, as OTEL_SERVICE_NAME is unset

    inference = spans[f"chat {observed.model}"]
    assert inference.parent_span_id == server.span_id
    attributes = inference.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "llamacpp"
    assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"] == observed.model
    assert attributes["gen_ai.request.max_tokens"] == 5
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.request.top_p"] == 0.8
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes["gen_ai.response.finish_reasons"] == [response.json()["finish_reason"]]
    [(event, event_attributes)] = inference.events
    assert event == "gen_ai.first_token" and event_attributes["gen_ai.server.time_to_first_token"] > 0
    # LLM_TRACE_CONTENT is off: no prompt or completion text anywhere in the span.
    assert not any(key.startswith(("gen_ai.input", "gen_ai.output")) for key in attributes)
    assert "Say hi." not in json.dumps(attributes)
    # OTEL_EXPORTER_OTLP_HEADERS reach the collector.
    assert all(h.get("x-collector-tenant") == "team-a" for h in observed.receiver.headers)


@pytest.mark.model
def test_a_stream_without_traceparent_starts_a_trace(observed: Observed) -> None:
    earlier = {span.span_id for span in observed.receiver.spans}
    response = httpx.post(
        observed.url + "/api/generate/stream", json={"prompt": "The sky is", "max_tokens": 7}, timeout=300
    )
    done = parse_events(response.text)[-1]
    name = f"text_completion {observed.model}"

    def this_stream(spans: list[Span]) -> list[Span]:
        new = [s for s in spans if s.span_id not in earlier]
        servers = {s.span_id for s in new if s.name == "POST /api/generate/stream"}
        return [
            s
            for s in new
            if s.name == name and s.parent_span_id in servers and s.attributes["gen_ai.request.max_tokens"] == 7
        ]

    [inference] = this_stream(observed.receiver.wait_for(this_stream))
    server = next(s for s in observed.receiver.spans if s.span_id == inference.parent_span_id)
    assert server.parent_span_id == ""  # a new trace: no caller
    assert server.trace_id == inference.trace_id
    assert inference.attributes["gen_ai.operation.name"] == "text_completion"
    assert inference.attributes["gen_ai.usage.output_tokens"] == done["usage"]["completion_tokens"]
    assert inference.attributes["gen_ai.usage.input_tokens"] == done["usage"]["prompt_tokens"]


@pytest.mark.model
def test_a_failed_request_marks_its_span_and_probes_are_not_traced(observed: Observed) -> None:
    traceparent, trace_id, _ = _traceparent()
    refused = httpx.post(
        observed.url + "/api/generate",
        json={"prompt": "Hi", "model": "not/allowed"},
        headers={"traceparent": traceparent},
        timeout=60,
    )
    assert refused.status_code == 404
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert httpx.get(observed.url + path, headers={"traceparent": traceparent}, timeout=60).status_code == 200
    [server] = _trace(observed.receiver.wait_for(lambda s: bool(_trace(s, trace_id))), trace_id).values()
    assert server.name == "POST /api/generate"
    assert server.attributes["http.response.status_code"] == 404
    time.sleep(1)  # five export intervals: a probe span would have arrived by now
    assert set(_trace(observed.receiver.spans, trace_id)) == {"POST /api/generate"}


@pytest.mark.model
def test_http_protobuf_export_with_content_recorded(tmp_path: Path) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, OTEL_SERVICE_NAME and LLM_TRACE_CONTENT=true."""
    with HttpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "named-by-otel",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "LLM_TRACE_CONTENT": "true",
            "LLM_LOG_LEVEL": "DEBUG",
        }
        with ServerProcess(env, log_path=tmp_path / "server.log") as server:
            server.wait_for("/health/ready", 200, timeout=300)
            traceparent, trace_id, _ = _traceparent()
            prompt = "Alpaca-quartz-mirage says"
            answer = httpx.post(
                server.url + "/api/generate/stream",
                json={"prompt": prompt, "max_tokens": 6},
                headers={"traceparent": traceparent},
                timeout=300,
            )
            text = joined_text(parse_events(answer.text))
            names = {"POST /api/generate/stream", "text_completion smollm2-135m-instruct"}
            spans = _trace(receiver.wait_for(lambda s: names <= set(_trace(s, trace_id))), trace_id)
            logs = server.logs()
    inference = spans["text_completion smollm2-135m-instruct"]
    assert inference.parent_span_id == spans["POST /api/generate/stream"].span_id
    assert inference.resource["service.name"] == "named-by-otel"  # OTEL_SERVICE_NAME wins
    assert json.loads(inference.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": prompt}]}
    ]
    [output] = json.loads(inference.attributes["gen_ai.output.messages"])
    assert output["role"] == "assistant" and output["parts"][0]["content"] == text
    # Content goes to traces only: the logs, at DEBUG level, still hold neither prompt nor completion.
    assert prompt not in logs and "Alpaca" not in logs
    assert text.strip() == "" or text not in logs


@pytest.mark.model
def test_an_unreachable_collector_neither_fails_nor_slows_requests(tmp_path: Path) -> None:
    # A collector that accepts connections and never answers: the worst case for an exporter.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        exporter_timeout = 60
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{blackhole.getsockname()[1]}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": str(exporter_timeout),
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_BSP_MAX_QUEUE_SIZE": "4",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
        }
        with ServerProcess(env, log_path=tmp_path / "server.log") as server:
            server.wait_for("/health/ready", 200, timeout=300)
            started = time.monotonic()
            for _ in range(6):  # more spans than the export queue holds: the surplus is dropped
                answer = httpx.post(
                    server.url + "/api/generate", json={"prompt": "Hi", "max_tokens": 2}, timeout=exporter_timeout
                )
                assert answer.status_code == 200
            # Every request finished while the exporter was still waiting out its first export's timeout.
            assert time.monotonic() - started < exporter_timeout
            blackhole.settimeout(10)
            exporter_connection, _ = blackhole.accept()  # the exporter did try: its connection is queued here
            exporter_connection.close()
            assert server.stop() == 0  # and shutdown does not hang on the collector either


def test_without_an_endpoint_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracer_provider("svc", environ={}) is None
    assert (
        tracer_provider("svc", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_SDK_DISABLED": "true"})
        is None
    )
    assert (
        tracer_provider("svc", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_TRACES_EXPORTER": "none"})
        is None
    )
    assert (
        tracer_provider(
            "svc", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        )
        is None
    )
    for variable in ENDPOINT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    telemetry = create_app(make_settings()).state.telemetry
    assert telemetry.tracer is None and telemetry.inference.tracer is None
