"""One app's telemetry: its metrics, its tracer (or none), the inference observer, and how they attach."""

from __future__ import annotations

import asyncio
import threading
from importlib.metadata import version

from litestar import Litestar

from llm_inference.models.registry import ModelRegistry
from llm_inference.settings import Settings
from llm_inference.telemetry.http import observe_http
from llm_inference.telemetry.inference import InferenceObserver
from llm_inference.telemetry.metrics import Metrics
from llm_inference.telemetry.state import StateMetrics
from llm_inference.telemetry.tracing import tracer_provider

# At shutdown, queued spans get this long to reach the collector: a collector that is gone must not hold up
# the pod's exit (the SDK's own limit is 30 s).
SHUTDOWN_FLUSH_SECONDS = 5.0


class Telemetry:
    def __init__(self, settings: Settings) -> None:
        self.metrics = Metrics()
        self.tracer_provider = tracer_provider(settings.service_name)
        tracer = None
        if self.tracer_provider is not None:
            tracer = self.tracer_provider.get_tracer("llm_inference", version("llm-inference"))
        self.tracer = tracer
        # The shared store's metrics, only where there is one (LLM_STATE_URL).
        self.state = StateMetrics(self.metrics.registry) if settings.state_url else None
        self.inference = InferenceObserver(
            self.metrics,
            tracer,
            trace_content=settings.trace_content,
            timeout_seconds=settings.request_timeout_seconds,
        )

    def instrument(self, app: Litestar, models: ModelRegistry) -> None:
        self.metrics.watch_models(models)
        # Wrap the app's own ASGI handler rather than add a Litestar middleware: those run only once a route
        # has matched, so 404s and 405s would never be counted, traced or logged.
        app.asgi_handler = observe_http(app.asgi_handler, self.metrics, self.tracer)

    async def aclose(self) -> None:
        if self.tracer_provider is None:
            return
        flush = threading.Thread(target=self.tracer_provider.shutdown, name="otel-shutdown", daemon=True)
        flush.start()
        await asyncio.to_thread(flush.join, SHUTDOWN_FLUSH_SECONDS)
