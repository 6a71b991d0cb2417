"""The service every HTTP surface shares: settings, the model registry, admission, the stall watch, the
sessions and the telemetry observer, handed to controllers by dependency injection."""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from contextlib import AbstractContextManager
from dataclasses import InitVar, dataclass, field
from typing import Protocol

from llm_inference.engines.base import Chunk, Engine
from llm_inference.engines.watchdog import StallWatch
from llm_inference.errors import NotReady
from llm_inference.models.registry import ModelRegistry
from llm_inference.service.admission import Admission
from llm_inference.service.prepare import Prepared
from llm_inference.service.sessions import LocalSessions, Sessions
from llm_inference.service.tool_dispatch import ToolDispatcher
from llm_inference.service.usage import current_usage, metered
from llm_inference.settings import Settings


class EngineHealth(enum.StrEnum):
    HEALTHY = "healthy"
    STALLED = "stalled"  # requests wait and the decode counter stands still: readiness 503, no restart
    DEAD = "dead"  # only a restart brings it back: liveness 503


@dataclass(frozen=True, slots=True)
class Health:
    """The service's health as the probes judge it, from one walk over the engines: what /health/ready answers
    (ready, reason) and each loaded model's engine (the llm_engine_state gauge)."""

    ready: bool
    reason: str
    engines: dict[str, EngineHealth]


class EmbeddingRecord(Protocol):
    """Filled in by the service for its observer: the tokens an embeddings request embedded."""

    tokens: int


class StateCheck(Protocol):
    async def ping(self) -> str | None:
        """None if the shared store answers, else why not."""
        ...


class GenerationObserver(Protocol):
    """Watches each generation's chunks as they pass (telemetry's InferenceObserver): the service calls it
    and does not import telemetry, which sits above it."""

    def watch(self, prepared: Prepared, chunks: AsyncGenerator[Chunk, None]) -> AsyncGenerator[Chunk, None]: ...

    def embedding(self, model: str, engine: Engine, record: EmbeddingRecord) -> AbstractContextManager[None]: ...

    def tool_dispatch(self, outcome: str) -> None:
        """One server-executed tool call ended: `ok`, or how it failed (ToolDispatchFailed.outcome)."""


@dataclass
class InferenceService:
    settings: Settings
    registry: ModelRegistry
    admission: Admission = field(init=False)
    stall_watch: StallWatch = field(init=False)
    tool_dispatcher: ToolDispatcher | None = field(init=False)  # None: LLM_TOOL_DISPATCH_URL is not set
    sessions: Sessions = field(init=False)
    # A check readiness waits for beside the model: the shared store's, with LLM_STATE_REQUIRED_FOR_READINESS.
    required_state: StateCheck | None = None

    draining: bool = False
    observer: GenerationObserver | None = None  # metrics, traces and the access log's inference fields
    # Where sessions live: this process unless the app passes the shared store's (LLM_STATE_URL).
    session_store: InitVar[Sessions | None] = None

    def __post_init__(self, session_store: Sessions | None) -> None:
        self.admission = Admission(self.settings.max_concurrent_requests, self.settings.max_queued_requests)
        self.stall_watch = StallWatch(self.settings.engine_stall_seconds)
        if session_store is None:
            session_store = LocalSessions(self.settings.max_sessions, self.settings.session_ttl_seconds)
        self.sessions = session_store
        self.tool_dispatcher = ToolDispatcher(self.settings) if self.settings.tool_dispatch_url else None

    async def aclose(self) -> None:
        """What the service holds beside the models (the app's lifespan closes the registry)."""
        if self.tool_dispatcher is not None:
            await self.tool_dispatcher.aclose()
        await self.sessions.aclose()

    def generation(self, prepared: Prepared) -> AsyncGenerator[Chunk, None]:
        chunks = prepared.engine.generate(prepared.request)
        if (meter := current_usage.get()) is not None:
            chunks = metered(chunks, meter)
        return chunks if self.observer is None else self.observer.watch(prepared, chunks)

    def refuse_if_draining(self) -> None:
        """New work is refused once the service drains (SIGTERM): the client retries on another replica."""
        if self.draining:
            raise NotReady("the service is shutting down; retry on another replica")

    async def readiness(self) -> tuple[bool, str]:
        health = await self.health()
        ready, reason = health.ready, health.reason
        if ready and self.required_state is not None:
            problem = await self.required_state.ping()
            if problem is not None:
                return False, f"{problem} (LLM_STATE_REQUIRED_FOR_READINESS=true)"
        return ready, reason

    async def health(self) -> Health:
        """Each loaded engine checked once (dead when check_health() fails) and the stall watch asked once, about
        the default model's engine (the model readiness answers for); readiness and the gauge read both."""
        checked = await self.registry.check_engines()
        default = self.registry.default_model
        engine = self.registry.loaded_engine(None)  # the default model may be unloaded (LRU): it loads on demand
        stalled = None
        if engine is not None and checked.get(default) is None:  # a dead engine is dead, not stalled
            stalled = self.stall_watch.stalled(engine)
        if self.draining:
            ready, reason = False, "draining: the service is shutting down"
        else:
            ready, reason = self.registry.readiness(checked)
            if ready and stalled:
                ready, reason = False, stalled
        engines = dict.fromkeys(checked, EngineHealth.HEALTHY)
        if stalled:
            engines[default] = EngineHealth.STALLED
        engines.update((model, EngineHealth.DEAD) for model, died in checked.items() if died is not None)
        return Health(ready, reason, engines)
