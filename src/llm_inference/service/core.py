"""The service every HTTP surface shares: settings, the model registry, admission, the stall watch and the
telemetry observer, handed to controllers by dependency injection."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from llm_inference.engines.base import Chunk, Engine
from llm_inference.engines.watchdog import StallWatch
from llm_inference.errors import NotReady
from llm_inference.models.registry import ModelRegistry
from llm_inference.service.admission import Admission
from llm_inference.service.prepare import Prepared
from llm_inference.settings import Settings


class EmbeddingRecord(Protocol):
    """Filled in by the service for its observer: the tokens an embeddings request embedded."""

    tokens: int


class GenerationObserver(Protocol):
    """Watches each generation's chunks as they pass (telemetry's InferenceObserver): the service calls it
    and does not import telemetry, which sits above it."""

    def watch(self, prepared: Prepared, chunks: AsyncGenerator[Chunk, None]) -> AsyncGenerator[Chunk, None]: ...

    def embedding(self, model: str, engine: Engine, record: EmbeddingRecord) -> AbstractContextManager[None]: ...


@dataclass
class InferenceService:
    settings: Settings
    registry: ModelRegistry
    admission: Admission = field(init=False)
    stall_watch: StallWatch = field(init=False)

    draining: bool = False
    observer: GenerationObserver | None = None  # metrics, traces and the access log's inference fields

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.max_concurrent_requests, self.settings.max_queued_requests)
        self.stall_watch = StallWatch(self.settings.engine_stall_seconds)

    def generation(self, prepared: Prepared) -> AsyncGenerator[Chunk, None]:
        chunks = prepared.engine.generate(prepared.request)
        return chunks if self.observer is None else self.observer.watch(prepared, chunks)

    def refuse_if_draining(self) -> None:
        """New work is refused once the service drains (SIGTERM): the client retries on another replica."""
        if self.draining:
            raise NotReady("the service is shutting down; retry on another replica")

    async def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining: the service is shutting down"
        ready, reason = await self.registry.readiness()
        engine = self.registry.loaded_engine(None) if ready else None
        if engine is not None:  # the default model may be unloaded (LRU) and still ready: it loads on demand
            stalled = self.stall_watch.stalled(engine)
            if stalled:
                return False, stalled
        return ready, reason
