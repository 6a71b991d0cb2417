"""Observes each generation as its chunks pass by: the GenAI metrics, the inference span (a child of the
request's server span, named and attributed per the GenAI semantic conventions) and the access log's model
and token fields. Prompt and completion text reach the span only with LLM_TRACE_CONTENT=true."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from llm_inference.engines.base import Chunk, Engine, FinishReason
from llm_inference.errors import ServiceError
from llm_inference.telemetry.embeddings import observe_embedding
from llm_inference.telemetry.http import current_exchange
from llm_inference.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from llm_inference.service.core import EmbeddingRecord
    from llm_inference.service.prepare import Prepared

# A cancellation this close to LLM_REQUEST_TIMEOUT_SECONDS is the timeout firing, not the client leaving.
TIMEOUT_TOLERANCE_SECONDS = 0.05
# The output-token counter is added to in steps of this many tokens and at the request's end: a scrape may miss
# fewer than this many tokens of each request in flight. Its locked increment on every token cost 0.4 us.
COUNT_EVERY_TOKENS = 16


class InferenceObserver:
    def __init__(self, metrics: Metrics, tracer: Tracer | None, *, trace_content: bool, timeout_seconds: float) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.trace_content = trace_content
        self.timeout_seconds = timeout_seconds

    def embedding(self, model: str, engine: Engine, record: EmbeddingRecord) -> AbstractContextManager[None]:
        """Observe one embeddings request made inside the returned context."""
        return observe_embedding(self.metrics, self.tracer, model, engine.info().backend, record)

    def tool_dispatch(self, outcome: str) -> None:
        self.metrics.tool_dispatch.labels(outcome).inc()

    async def watch(self, prepared: Prepared, chunks: AsyncGenerator[Chunk, None]) -> AsyncGenerator[Chunk, None]:
        """Pass the engine's chunks through unchanged, observing them. Closing this closes the engine's."""
        generation = _Generation(self, prepared)
        try:
            async for chunk in chunks:
                generation.on_chunk(chunk)
                yield chunk
        except BaseException as exc:  # cancellation (client gone, timeout) included
            generation.on_failure(exc)
            raise
        finally:
            generation.close()
            await chunks.aclose()


def _text_message(role: str, content: str) -> dict[str, object]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}


class _Generation:
    """One request's observation, from its first step in the engine to its last chunk or its failure."""

    def __init__(self, observer: InferenceObserver, prepared: Prepared) -> None:
        self.observer = observer
        self.prepared = prepared
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.prefilled = False
        self.prompt_tokens = len(prepared.request.prompt_token_ids or ())
        self.completion_tokens = 0
        self.counted_tokens = 0  # of completion_tokens, those added to the generation_tokens counter
        self.done = False
        self.finish_reason: str | None = None
        self.backend = prepared.engine.info().backend
        metrics = observer.metrics
        self.labels = (prepared.model, self.backend)
        self.generation_tokens = metrics.generation_tokens.labels(*self.labels)
        self.text: list[str] | None = [] if observer.trace_content else None
        if (constraint := prepared.request.sampling.constraint) is not None:
            metrics.constrained_requests.labels(*self.labels, constraint.kind).inc()
        self.exchange = current_exchange.get()
        if self.exchange is not None:
            self.exchange.model = prepared.model
        self.span = (
            None
            if observer.tracer is None
            else observer.tracer.start_span(
                f"{prepared.operation} {prepared.model}",
                kind=SpanKind.INTERNAL,  # the model runs in this process
                attributes=self._request_attributes(),
            )
        )

    def _request_attributes(self) -> dict[str, AttributeValue]:
        prepared, sampling = self.prepared, self.prepared.request.sampling
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": prepared.operation,
            "gen_ai.provider.name": self.backend,
            "gen_ai.system": self.backend,
            "gen_ai.request.model": prepared.model,
            "gen_ai.request.max_tokens": sampling.max_tokens,
            "gen_ai.request.temperature": sampling.temperature,
            "gen_ai.request.top_p": sampling.top_p,
            "gen_ai.response.id": prepared.request.request_id,
        }
        if sampling.top_k:
            attributes["gen_ai.request.top_k"] = sampling.top_k
        if sampling.seed is not None:
            attributes["gen_ai.request.seed"] = sampling.seed
        if sampling.stop:
            attributes["gen_ai.request.stop_sequences"] = list(sampling.stop)
        if self.observer.trace_content:
            if prepared.messages is not None:
                messages = [_text_message(m.role, m.content) for m in prepared.messages]
            else:
                messages = [_text_message("user", prepared.request.prompt)]
            attributes["gen_ai.input.messages"] = json.dumps(messages)
        return attributes

    def on_chunk(self, chunk: Chunk) -> None:
        metrics = self.observer.metrics
        if not self.prefilled:
            self.prefilled = True
            self.prompt_tokens = chunk.prompt_tokens
            metrics.prompt_tokens.labels(*self.labels).inc(chunk.prompt_tokens)
            if chunk.queued_seconds is not None:
                metrics.queue_time.labels(*self.labels).observe(chunk.queued_seconds)
            if chunk.constraint_compile_seconds is not None:
                metrics.constraint_compile.labels(*self.labels).observe(chunk.constraint_compile_seconds)
        tokens = chunk.completion_tokens
        if tokens > self.completion_tokens:
            if self.first_token_at is None:
                self._first_token()
            self.completion_tokens = tokens
            if tokens - self.counted_tokens >= COUNT_EVERY_TOKENS:
                self._count_tokens()
        if self.text is not None:
            self.text.append(chunk.text)
        if chunk.finish_reason is FinishReason.CANCELLED:
            self._end("cancelled", error_type="cancelled")
        elif chunk.finish_reason is not None:
            self._end(chunk.finish_reason.value, error_type=None)

    def _count_tokens(self) -> None:
        self.generation_tokens.inc(self.completion_tokens - self.counted_tokens)
        self.counted_tokens = self.completion_tokens

    def _first_token(self) -> None:
        self.first_token_at = time.perf_counter()
        seconds = self.first_token_at - self.started
        self.observer.metrics.time_to_first_token.labels(*self.labels, self.prepared.operation).observe(seconds)
        if self.span is not None:
            self.span.add_event("gen_ai.first_token", {"gen_ai.server.time_to_first_token": seconds})

    def on_failure(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            elapsed = time.perf_counter() - self.started
            timed_out = elapsed >= self.observer.timeout_seconds - TIMEOUT_TOLERANCE_SECONDS
            reason = "timeout" if timed_out else "cancelled"
            self._end(reason, error_type=reason)
        else:
            self._end("error", error_type=exc.type if isinstance(exc, ServiceError) else type(exc).__name__)

    def _end(self, finish_reason: str, error_type: str | None) -> None:
        if self.done:
            return
        self.done = True
        self.finish_reason = finish_reason
        self._count_tokens()
        now = time.perf_counter()
        metrics, labels, operation = self.observer.metrics, self.labels, self.prepared.operation
        metrics.request_duration.labels(*labels, operation, error_type or "").observe(now - self.started)
        metrics.requests_finished.labels(*labels, finish_reason).inc()
        if error_type is None:
            metrics.request_prompt_tokens.labels(*labels).observe(self.prompt_tokens)
            metrics.request_generation_tokens.labels(*labels).observe(self.completion_tokens)
            if self.first_token_at is not None and self.completion_tokens > 1:
                per_token = (now - self.first_token_at) / (self.completion_tokens - 1)
                metrics.time_per_output_token.labels(*labels, operation).observe(per_token)
        if self.span is not None:
            self.span.set_attributes(
                {
                    "gen_ai.response.model": self.prepared.model,
                    "gen_ai.response.finish_reasons": [finish_reason],
                    "gen_ai.usage.input_tokens": self.prompt_tokens,
                    "gen_ai.usage.output_tokens": self.completion_tokens,
                }
            )
            if self.text is not None:
                output = {**_text_message("assistant", "".join(self.text)), "finish_reason": finish_reason}
                self.span.set_attribute("gen_ai.output.messages", json.dumps([output]))
            if error_type is not None:
                self.span.set_attribute("error.type", error_type)
                if error_type != "cancelled":  # a client leaving is not the service's failure
                    self.span.set_status(Status(StatusCode.ERROR, error_type))

    def close(self) -> None:
        if not self.done:  # closed before a finishing chunk: the consumer stopped reading
            self.on_failure(GeneratorExit())
        if self.exchange is not None:
            self.exchange.prompt_tokens = self.prompt_tokens
            self.exchange.completion_tokens = self.completion_tokens
            self.exchange.finish_reason = self.finish_reason
        if self.span is not None:
            self.span.end()
