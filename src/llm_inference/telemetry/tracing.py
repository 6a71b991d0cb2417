"""OTLP trace export, configured by the OpenTelemetry SDK's own OTEL_* variables.

With no OTLP endpoint set there is no tracer at all, so requests pay nothing for tracing. Spans are exported
in batches by the SDK's background thread: a slow or unreachable collector delays only that thread, and a
full queue drops spans rather than making a request wait.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from importlib.metadata import version
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

# The SDK is imported where a tracer is made: with tracing off (no endpoint) the worker does without its memory.
if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
# The Python SDK's own default (opentelemetry-instrument picks the gRPC exporter for "otlp").
DEFAULT_PROTOCOL = "grpc"


BATCH_VARIABLES = (
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
)


def batch_settings_problem() -> str | None:
    """What is wrong with the OTEL_BSP_* values, if anything. The SDK reads and checks them only when its batch
    span processor is built, in the server's worker, where a bad one ends the worker with a traceback; the CLI
    asks here first, so start-up stops with one line naming the variables instead."""
    given = {name: os.environ[name] for name in BATCH_VARIABLES if name in os.environ}
    if not given:
        return None
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    class _NoExporter(SpanExporter):
        def export(self, spans: object) -> None:  # type: ignore[override]
            return None

    try:
        BatchSpanProcessor(_NoExporter()).shutdown()  # type: ignore[no-untyped-call]  # the SDK's own typing
    except ValueError as exc:
        shown = ", ".join(f"{name}={value!r}" for name, value in given.items())
        # Our rule first; the SDK's wording only as a suffix, so its rewording cannot change the message.
        return (
            f"{shown} is invalid: expected positive integers with "
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE <= OTEL_BSP_MAX_QUEUE_SIZE ({exc})"
        )
    return None


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[name].strip() for name in names if environ.get(name, "").strip()), None)


def _exporter(protocol: str) -> SpanExporter:
    # Each exporter reads its endpoint, headers, timeout, compression and certificates from OTEL_* itself.
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def tracer_provider(service_name: str, environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A provider exporting over OTLP, or None when tracing is off (no endpoint, or switched off)."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    endpoint = _first(environ, ENDPOINT_VARIABLES)
    if endpoint is None:
        return None
    protocol = _first(environ, PROTOCOL_VARIABLES) or DEFAULT_PROTOCOL
    if protocol not in ("grpc", "http/protobuf"):
        log.error(
            "tracing is off: unsupported OTLP protocol",
            extra={"protocol": protocol, "expected": "grpc | http/protobuf"},
        )
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # LLM_SERVICE_NAME names the service unless OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say otherwise.
    resource = Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: version("llm-inference")}).merge(
        OTELResourceDetector().detect()
    )
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG). No shutdown at exit: the app's lifespan flushes with
    # a time limit, where the SDK's exit hook could wait 30 s on a collector that is gone.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(_exporter(protocol)))
    where = urlsplit(endpoint)  # without any user:password@ part
    log.info(
        "tracing on",
        extra={"endpoint": f"{where.scheme}://{where.netloc.rpartition('@')[2]}{where.path}", "protocol": protocol},
    )
    return provider
