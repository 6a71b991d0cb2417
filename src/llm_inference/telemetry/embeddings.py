"""Observes one embeddings request: the GenAI duration metric and prompt tokens (operation="embeddings"), an
inference span named per the GenAI conventions, and the access log's model and token fields."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from llm_inference.errors import ServiceError
from llm_inference.telemetry.http import current_exchange
from llm_inference.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from llm_inference.service.core import EmbeddingRecord

OPERATION = "embeddings"


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return exc.type if isinstance(exc, ServiceError) else type(exc).__name__


@contextlib.contextmanager
def observe_embedding(
    metrics: Metrics, tracer: Tracer | None, model: str, backend: str, record: EmbeddingRecord
) -> Iterator[None]:
    started = time.perf_counter()
    span = (
        None
        if tracer is None
        else tracer.start_span(
            f"{OPERATION} {model}",
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": OPERATION,
                "gen_ai.provider.name": backend,
                "gen_ai.system": backend,
                "gen_ai.request.model": model,
            },
        )
    )
    error_type = ""
    try:
        yield
    except BaseException as exc:
        error_type = _error_type(exc)
        raise
    finally:
        labels = (model, backend)
        metrics.request_duration.labels(*labels, OPERATION, error_type).observe(time.perf_counter() - started)
        if not error_type:
            metrics.prompt_tokens.labels(*labels).inc(record.tokens)
        exchange = current_exchange.get()
        if exchange is not None:
            exchange.model, exchange.prompt_tokens = model, record.tokens
        if span is not None:
            span.set_attributes({"gen_ai.response.model": model, "gen_ai.usage.input_tokens": record.tokens})
            if error_type:
                span.set_attribute("error.type", error_type)
                if error_type != "cancelled":
                    span.set_status(Status(StatusCode.ERROR, error_type))
            span.end()
