"""The allow-list of models: loading them in the background, their readiness, which engine serves which."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from llm_inference.engines.base import Engine, GenerationRequest, SamplingParams
from llm_inference.engines.selection import choose_backend, load_engine
from llm_inference.errors import EngineDead, ModelNotFound, NotReady
from llm_inference.models.engine_config import engine_config
from llm_inference.models.fetch import fetch
from llm_inference.models.spec import ModelSpec, parse_spec
from llm_inference.settings import Settings

log = logging.getLogger(__name__)


class ModelState(enum.StrEnum):
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


@dataclass
class ModelEntry:
    spec: ModelSpec
    state: ModelState = ModelState.LOADING
    backend: str | None = None
    backend_reason: str | None = None
    error: str | None = None
    engine: Engine | None = None
    load_seconds: float | None = None


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default_model = settings.effective_default_model
        self._entries = {
            spec.id: ModelEntry(spec)
            for spec in (parse_spec(text, settings.model_path) for text in settings.allowed_models)
        }
        self._load_task: asyncio.Task[None] | None = None
        self.on_loaded: list[Callable[[ModelEntry], None]] = []  # run after a model loads (the metrics hook)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def start(self) -> None:
        """Load every allowed model in the background (default first) so liveness answers meanwhile."""
        self._load_task = asyncio.create_task(self._load_all(), name="model-loader")

    async def _load_all(self) -> None:
        ordered = sorted(self._entries.values(), key=lambda e: e.spec.id != self.default_model)
        for entry in ordered:
            await self._load(entry)

    async def _load(self, entry: ModelEntry) -> None:
        started = time.monotonic()
        try:
            entry.backend, entry.backend_reason = choose_backend(self.settings.backend, entry.spec)
            log.info(
                "loading model",
                extra={"model": entry.spec.id, "backend": entry.backend, "reason": entry.backend_reason},
            )
            model_path, tokenizer_path = await asyncio.to_thread(fetch, entry.spec)
            config = engine_config(entry.backend, self.settings)
            engine = await load_engine(entry.spec, model_path, tokenizer_path, config)
            await self._warm_up(engine)
        except Exception as exc:  # any load failure is reported by readiness, never crashes the server
            entry.state, entry.error = ModelState.FAILED, f"{type(exc).__name__}: {exc}"
            log.error("model failed to load", extra={"model": entry.spec.id, "error": entry.error})
            return
        entry.engine, entry.state = engine, ModelState.LOADED
        entry.load_seconds = time.monotonic() - started
        log.info("model ready", extra={"model": entry.spec.id, "seconds": round(entry.load_seconds, 2)})
        for callback in self.on_loaded:
            callback(entry)

    @staticmethod
    async def _warm_up(engine: Engine) -> None:
        """Real generations, greedy and sampled: readiness means the model has answered, not just that it is in
        memory. The sampled one (top-k, top-p) matters on vLLM: its sampling kernels are compiled on first use,
        which stalled every stream for ~7 s when the first client request sampled (seen on an H200)."""
        greedy = SamplingParams(max_tokens=2, temperature=0, top_p=1)
        sampled = SamplingParams(max_tokens=2, temperature=0.7, top_p=0.9, top_k=40, seed=0)
        for name, sampling in (("warm-up", greedy), ("warm-up-sampled", sampled)):
            async for _ in engine.generate(GenerationRequest(request_id=name, prompt="Hello", sampling=sampling)):
                pass

    def entry_for(self, model: str | None) -> ModelEntry:
        model = model or self.default_model
        entry = self._entries.get(model)
        if entry is None:
            raise ModelNotFound(
                f"model {model!r} is not served here; allowed: {', '.join(self._entries)}", param="model"
            )
        return entry

    def engine_for(self, model: str | None) -> tuple[str, Engine]:
        entry = self.entry_for(model)
        if entry.state is ModelState.LOADING:
            raise NotReady(f"model {entry.spec.id!r} is still loading")
        if entry.state is ModelState.FAILED or entry.engine is None:
            raise NotReady(f"model {entry.spec.id!r} failed to load: {entry.error}", retry_after_seconds=60)
        return entry.spec.id, entry.engine

    async def readiness(self) -> tuple[bool, str]:
        """Ready when the default model has loaded, answered its warm-up generation and its engine lives."""
        entry = self._entries[self.default_model]
        if entry.state is ModelState.LOADED and entry.engine is not None:
            try:
                await entry.engine.check_health()
            except EngineDead as exc:
                return False, f"engine dead: {exc.message}"
            return True, "ready"
        if entry.state is ModelState.FAILED:
            return False, f"failed: {entry.error}"
        return False, "loading"

    async def dead_engine(self) -> str | None:
        """Why this process can no longer serve, if it cannot: a loaded model's engine died. Unlike a load in
        progress or a stall, that never heals, so liveness reports it and the orchestrator restarts the pod."""
        for model, entry in self._entries.items():
            if entry.state is ModelState.LOADED and entry.engine is not None:
                try:
                    await entry.engine.check_health()
                except EngineDead as exc:
                    return f"engine dead ({model}): {exc.message}"
        return None

    async def aclose(self) -> None:
        if self._load_task and not self._load_task.done():
            self._load_task.cancel()
        for entry in self._entries.values():
            if entry.engine is not None:
                await entry.engine.aclose()
