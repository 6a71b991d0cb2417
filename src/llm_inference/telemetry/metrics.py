"""Prometheus metrics: one registry per app holding the HTTP, inference, model and build metrics, and /metrics.

Names follow the OpenTelemetry GenAI semantic conventions where they define the quantity (the three
gen_ai_server_* histograms, with the conventions' bucket boundaries); the rest are the quantities vLLM's
dashboards chart (running/waiting, prompt/generation tokens, queue time, finish reasons) under an `llm_`
prefix. docs/observability.md "Metrics" lists every metric with its type and labels.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib.metadata import version
from typing import Any

from litestar import Request, get
from litestar.response import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llm_inference.models.registry import ModelRegistry, ModelState
from llm_inference.service.core import EngineHealth, InferenceService

HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Bucket boundaries the GenAI semantic conventions advise for each histogram.
TIME_TO_FIRST_TOKEN_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
TIME_PER_OUTPUT_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
REQUEST_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
# gen_ai.client.token.usage's boundaries: the conventions define no server-side token histogram.
TOKEN_COUNT_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
# Queueing is short or it is overload; the TTFT boundaries cover both ends.
QUEUE_TIME_BUCKETS = TIME_TO_FIRST_TOKEN_BUCKETS

# A cached grammar takes well under a millisecond; a compile is refused past 2 s (engines/llamacpp/grammar.py).
CONSTRAINT_COMPILE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

MODEL_LABELS = ("model", "backend")


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration until the last body byte is sent.",
            ["route", "method"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from the start of generation to the first output token (gen_ai.server.time_to_first_token).",
            [*MODEL_LABELS, "operation"],
            buckets=TIME_TO_FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Per request, decode time after the first token divided by the tokens after the first "
            "(gen_ai.server.time_per_output_token); successful requests with two or more tokens.",
            [*MODEL_LABELS, "operation"],
            buckets=TIME_PER_OUTPUT_TOKEN_BUCKETS,
            registry=registry,
        )
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Generation time until the last token (gen_ai.server.request.duration); error_type is empty "
            "for successful requests.",
            [*MODEL_LABELS, "operation", "error_type"],
            buckets=REQUEST_DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_time = Histogram(
            "llm_request_queue_time_seconds",
            "Time a request waited in the engine before it started on it (vLLM: request_queue_time_seconds).",
            MODEL_LABELS,
            buckets=QUEUE_TIME_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "llm_prompt_tokens",
            "Prompt tokens prefilled (vLLM: prompt_tokens_total).",
            MODEL_LABELS,
            registry=registry,
        )
        self.generation_tokens = Counter(
            "llm_generation_tokens",
            "Output tokens generated (vLLM: generation_tokens_total).",
            MODEL_LABELS,
            registry=registry,
        )
        self.request_prompt_tokens = Histogram(
            "llm_request_prompt_tokens",
            "Prompt length of each finished request, in tokens.",
            MODEL_LABELS,
            buckets=TOKEN_COUNT_BUCKETS,
            registry=registry,
        )
        self.request_generation_tokens = Histogram(
            "llm_request_generation_tokens",
            "Output length of each finished request, in tokens.",
            MODEL_LABELS,
            buckets=TOKEN_COUNT_BUCKETS,
            registry=registry,
        )
        self.requests_finished = Counter(
            "llm_requests_finished",
            "Generations by how they ended: stop | length | cancelled (client gone) | timeout | error.",
            [*MODEL_LABELS, "finish_reason"],
            registry=registry,
        )
        self.constrained_requests = Counter(
            "llm_constrained_requests",
            "Generations whose output is constrained (structured outputs), by kind: json_object | json_schema.",
            [*MODEL_LABELS, "kind"],
            registry=registry,
        )
        self.constraint_compile = Histogram(
            "llm_constraint_compile_seconds",
            "Time to turn a request's constraint into the engine's mechanism (llama.cpp: the schema's grammar, "
            "cached by schema, and its sampler); engines that compile it internally (vLLM) report none.",
            MODEL_LABELS,
            buckets=CONSTRAINT_COMPILE_BUCKETS,
            registry=registry,
        )
        self.tool_dispatch = Counter(
            "llm_tool_dispatch",
            "Server-executed tool calls (LLM_TOOL_DISPATCH_URL) by outcome: ok | error_status (not 2xx) | "
            "unreachable | timeout | too_large (past LLM_TOOL_RESULT_MAX_BYTES) | invalid (arguments or result).",
            ["outcome"],
            registry=registry,
        )
        # Health as the probes judge it, for alerts: a probe's answer reaches the kubelet, not Prometheus.
        self.ready = Gauge(
            "llm_ready",
            "1 while /health/ready answers 200 (the default model loaded, its engine alive and making progress, "
            "not draining), else 0.",
            registry=registry,
        )
        self.engine_state = Gauge(
            "llm_engine_state",
            "1 for the state each loaded model's engine is in (healthy | stalled | dead), else 0.",
            [*MODEL_LABELS, "state"],
            registry=registry,
        )
        build = Gauge(
            "llm_build_info", "The running build; always 1.", ["version", "python_version"], registry=registry
        )
        build.labels(version("llm-inference"), platform.python_version()).set(1)

    def watch_models(self, models: ModelRegistry) -> None:
        """Report model state, info, load time and each engine's running/waiting requests at scrape time."""
        self.registry.register(_ModelCollector(models))

    async def observe_health(self, service: InferenceService) -> None:
        """Judge readiness and each engine's health now, at scrape time, as the probes would."""
        health = await service.health()
        self.ready.set(1.0 if health.ready else 0.0)
        for model, engine in health.engines.items():
            backend = service.registry.entry_for(model).backend or "unknown"
            for state in EngineHealth:
                self.engine_state.labels(model, backend, state.value).set(1.0 if state is engine else 0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ModelCollector(Collector):
    """Read at scrape time: nothing is kept up to date per request, and a scrape always sees the truth."""

    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        return {
            "state": GaugeMetricFamily(
                "llm_model_state",
                "1 for the state each allowed model is in (not_loaded | downloading | loading | loaded | failed), "
                "else 0.",
                labels=["model", "state"],
            ),
            "loads": CounterMetricFamily(
                "llm_model_loads",
                "Loads of each model that succeeded (a reload after an unload counts again).",
                labels=["model"],
            ),
            "in_flight": GaugeMetricFamily(
                "llm_model_requests_in_flight",
                "Requests holding each model (or waiting for it to load): a model with any is never unloaded.",
                labels=["model"],
            ),
            "last_used": GaugeMetricFamily(
                "llm_model_last_used_timestamp_seconds",
                "When a request last used each model (Unix time); absent until one has.",
                labels=["model"],
            ),
            "download": GaugeMetricFamily(
                "llm_model_download_bytes",
                "A downloading model's bytes: done, and total once the hub has said.",
                labels=["model", "kind"],
            ),
            "info": GaugeMetricFamily(
                "llm_model_info",
                "A loaded model and what serves it; always 1.",
                labels=["model", "backend", "format", "context_length", "quantization"],
            ),
            "load": GaugeMetricFamily(
                "llm_model_load_duration_seconds",
                "Time the model took to load, warm-up generation included.",
                labels=list(MODEL_LABELS),
            ),
            "running": GaugeMetricFamily(
                "llm_num_requests_running",
                "Requests the engine is decoding (vLLM: num_requests_running).",
                labels=list(MODEL_LABELS),
            ),
            "waiting": GaugeMetricFamily(
                "llm_num_requests_waiting",
                "Requests waiting for the engine (vLLM: num_requests_waiting).",
                labels=list(MODEL_LABELS),
            ),
            "kv_cache": GaugeMetricFamily(
                "llm_kv_cache_usage_ratio",
                "Share of the KV cache held by running requests, 0..1 (vLLM: kv_cache_usage_perc).",
                labels=list(MODEL_LABELS),
            ),
            "prefix_queries": CounterMetricFamily(
                "llm_prefix_cache_queries",
                "Prompt tokens the engine looked up in its prefix cache (vLLM: prefix_cache_queries).",
                labels=list(MODEL_LABELS),
            ),
            "prefix_hits": CounterMetricFamily(
                "llm_prefix_cache_hits",
                "Prompt tokens whose KV cells the engine found cached, so did not compute (vLLM: prefix_cache_hits); "
                "the hit rate is rate(hits) / rate(queries).",
                labels=list(MODEL_LABELS),
            ),
        }

    def describe(self) -> Iterable[Metric]:
        return self._families().values()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        for entry in self.models.entries():
            model = entry.spec.id
            for state in ModelState:
                families["state"].add_metric([model, state.value], 1.0 if entry.state is state else 0.0)
            families["loads"].add_metric([model], entry.loads)
            families["in_flight"].add_metric([model], entry.in_flight)
            if entry.last_used is not None:
                families["last_used"].add_metric([model], entry.last_used)
            if entry.state is ModelState.DOWNLOADING:
                families["download"].add_metric([model, "done"], entry.bytes_done or 0)
                if entry.bytes_total is not None:
                    families["download"].add_metric([model, "total"], entry.bytes_total)
            info, stats = entry.engine_info(), entry.engine_stats()
            if info is None or stats is None:  # not loaded
                continue
            backend = entry.backend or "unknown"
            families["info"].add_metric(
                [model, backend, info.model_format, str(info.context_length), info.quantization or ""], 1.0
            )
            if entry.load_seconds is not None:
                families["load"].add_metric([model, backend], entry.load_seconds)
            families["running"].add_metric([model, backend], stats.running)
            families["waiting"].add_metric([model, backend], stats.waiting)
            if stats.kv_cache_usage is not None:
                families["kv_cache"].add_metric([model, backend], stats.kv_cache_usage)
            if stats.prefix_cache_queries is not None and stats.prefix_cache_hits is not None:
                families["prefix_queries"].add_metric([model, backend], stats.prefix_cache_queries)
                families["prefix_hits"].add_metric([model, backend], stats.prefix_cache_hits)
        return families.values()


# Litestar appends "; charset=utf-8" to every text/* media type itself: without this, the header said it twice.
_EXPOSITION_MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@get("/metrics", tags=["observability"], summary="Prometheus metrics", media_type="text/plain")
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    metrics = request.app.state.telemetry.metrics
    await metrics.observe_health(request.app.state.service)
    return Response(metrics.exposition(), media_type=_EXPOSITION_MEDIA_TYPE)
