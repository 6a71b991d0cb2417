"""The allow-list of models and their lives: preloaded at start-up or loaded on first use, at most
LLM_MAX_LOADED_MODELS loaded at once (the least recently used idle one makes room), a failed load retried
after LLM_MODEL_RETRY_SECONDS. Requests hold a lease on their model, so a model in use is never unloaded."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from llm_inference.engines.base import Engine, EngineInfo, EngineStats, GenerationRequest, SamplingParams
from llm_inference.engines.selection import choose_backend, load_engine
from llm_inference.errors import EngineDead, ModelBusy, ModelNotFound, NotReady
from llm_inference.model_spec import ModelSpec, parse_spec
from llm_inference.models.engine_config import engine_config
from llm_inference.models.fetch import fetch
from llm_inference.settings import Settings

log = logging.getLogger(__name__)


class ModelState(enum.StrEnum):
    NOT_LOADED = "not_loaded"
    DOWNLOADING = "downloading"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


# The states that hold one of the LLM_MAX_LOADED_MODELS places: a load in progress will need its memory.
_HOLDS_A_PLACE = (ModelState.DOWNLOADING, ModelState.LOADING, ModelState.LOADED)


@dataclass(eq=False)
class ModelEntry:
    spec: ModelSpec
    preload: bool = False
    state: ModelState = ModelState.NOT_LOADED
    backend: str | None = None
    backend_reason: str | None = None
    error: str | None = None
    engine: Engine | None = None
    load_seconds: float | None = None
    loads: int = 0  # loads that succeeded since start-up (a reload after an unload counts again)
    in_flight: int = 0  # requests holding a lease, or waiting for this model to load
    last_used: float | None = None  # epoch seconds a request last took or gave back a lease
    loaded_at: float | None = None  # epoch seconds
    failed_at: float | None = None  # monotonic seconds
    bytes_done: int | None = None  # while downloading
    bytes_total: int | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def recency(self) -> float:
        """What the LRU orders by: the last use, or the load for a model no request has used yet."""
        return max(self.last_used or 0.0, self.loaded_at or 0.0)

    # What the surfaces and telemetry may know of a loaded model's engine: they read it here, and reach the
    # engine itself only through a lease (the service's requests) or the registry's health walk.
    def engine_info(self) -> EngineInfo | None:
        """What serves the model (backend, format, context length...), while it is loaded."""
        return self.engine.info() if self.engine is not None else None

    def engine_stats(self) -> EngineStats | None:
        """The engine's running and waiting requests and KV-cache use, while the model is loaded."""
        return self.engine.stats() if self.engine is not None else None

    def vocab_size(self) -> int | None:
        """The size of the model's vocabulary (valid token ids are below it), while it is loaded."""
        return self.engine.vocab_size() if self.engine is not None else None


class ModelLease:
    """A request's hold on a loaded model: while any is held, the model is not unloaded. Like the admission
    Slot it travels with the request (a stream owns it until it ends) and is released once."""

    __slots__ = ("_entry", "engine", "model")

    def __init__(self, entry: ModelEntry) -> None:
        assert entry.engine is not None
        self.model, self.engine = entry.spec.id, entry.engine
        self._entry: ModelEntry | None = entry  # its in_flight already counts this request (see acquire)
        entry.last_used = time.time()

    def release(self) -> None:
        if self._entry is not None:
            self._entry.in_flight -= 1
            self._entry.last_used = time.time()
            self._entry = None

    def __enter__(self) -> ModelLease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default_model = settings.effective_default_model
        self.max_loaded = settings.effective_max_loaded_models
        preload = set(settings.effective_preload_models)
        self._entries = {
            spec.id: ModelEntry(spec, preload=spec.id in preload)
            for spec in (parse_spec(text, settings.model_path) for text in settings.allowed_models)
        }
        self._preload_task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # engines being closed after an unload
        self._closed = False
        self.on_loaded: list[Callable[[ModelEntry], None]] = []  # run after a model loads (the OpenAPI hook)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def start(self) -> None:
        """Load the preloaded models in the background (default first), so liveness answers meanwhile."""
        self._preload_task = asyncio.create_task(self._preload(), name="model-preloader")

    async def _preload(self) -> None:
        ordered = sorted(
            (e for e in self._entries.values() if e.preload), key=lambda e: e.spec.id != self.default_model
        )
        for entry in ordered:  # one at a time: loads compete for the same cores and disk
            try:
                await self._begin_load(entry, retry_now=True)
            except NotReady as exc:
                log.error("cannot preload model", extra={"model": entry.spec.id, "error": exc.message})

    def entry_for(self, model: str | None) -> ModelEntry:
        model = model or self.default_model
        entry = self._entries.get(model)
        if entry is None:
            raise ModelNotFound(
                f"model {model!r} is not served here; allowed: {', '.join(self._entries)}", param="model"
            )
        return entry

    async def acquire(self, model: str | None) -> ModelLease:
        """A lease on the model's engine, loading the model first if it is not loaded. Concurrent callers share
        one load and wait for it up to LLM_REQUEST_TIMEOUT_SECONDS. Raises ModelNotFound (404), or NotReady
        (503 with Retry-After) when the model failed to load, or no place can be freed for it."""
        entry = self.entry_for(model)
        # Counted from the start, so the model is not chosen for eviction between its load and this lease.
        entry.in_flight += 1
        try:
            limit = self.settings.request_timeout_seconds
            deadline = asyncio.get_running_loop().time() + limit
            while entry.state is not ModelState.LOADED:
                task = self._begin_load(entry)
                try:
                    async with asyncio.timeout_at(deadline):
                        await asyncio.shield(task)  # a client that leaves does not cancel the others' load
                except TimeoutError:
                    raise NotReady(
                        f"model {entry.spec.id!r} is still {entry.state.value} after "
                        f"LLM_REQUEST_TIMEOUT_SECONDS={limit:g}"
                    ) from None
                if entry.state is ModelState.FAILED:
                    raise self._failed(entry)
            return ModelLease(entry)
        except BaseException:
            entry.in_flight -= 1
            raise

    async def load(self, model: str) -> ModelEntry:
        """An operator's load: now, even if the last attempt failed less than LLM_MODEL_RETRY_SECONDS ago."""
        entry = self.entry_for(model)
        if entry.state is not ModelState.LOADED:
            entry.in_flight += 1  # no eviction between the load and the answer
            try:
                await asyncio.shield(self._begin_load(entry, retry_now=True))
            finally:
                entry.in_flight -= 1
        if entry.state is ModelState.FAILED:
            raise self._failed(entry)
        return entry

    async def unload(self, model: str) -> ModelEntry:
        """An operator's unload. A model with requests in flight is refused (409) rather than drained: draining
        would leave it serving for as long as its longest stream, and the operator can retry in a moment."""
        entry = self.entry_for(model)
        if entry.in_flight:
            raise ModelBusy(
                f"model {entry.spec.id!r} has {entry.in_flight} request(s) in flight; retry once they end",
                param="model",
            )
        if entry.state in (ModelState.DOWNLOADING, ModelState.LOADING):
            raise ModelBusy(f"model {entry.spec.id!r} is {entry.state.value}; retry once it has loaded", param="model")
        if entry.state is ModelState.LOADED:
            await self._start_unload(entry, reason="asked by an operator")
        elif entry.state is ModelState.FAILED:
            entry.state, entry.error = ModelState.NOT_LOADED, None
        return entry

    def _begin_load(self, entry: ModelEntry, *, retry_now: bool = False) -> asyncio.Task[None]:
        """The model's load in progress, or a new one. Synchronous, so no other request can interleave between
        the check for a free place and taking it."""
        if entry._task is not None and not entry._task.done():
            return entry._task
        if entry.state is ModelState.FAILED and not retry_now and self._retry_in(entry) > 0:
            raise self._failed(entry)
        closing = self._make_room(entry)
        entry.state, entry.error, entry.bytes_done, entry.bytes_total = ModelState.LOADING, None, None, None
        entry._task = asyncio.create_task(self._load(entry, closing), name=f"load {entry.spec.id}")
        return entry._task

    def _make_room(self, entry: ModelEntry) -> list[asyncio.Task[None]]:
        """Unload the least recently used idle models until `entry` fits in LLM_MAX_LOADED_MODELS; return the
        closes in progress, which the load waits for so their memory is free first."""
        holding = [e for e in self._entries.values() if e is not entry and e.state in _HOLDS_A_PLACE]
        excess = len(holding) + 1 - self.max_loaded
        if excess <= 0:
            return []
        idle = sorted(
            (e for e in holding if e.state is ModelState.LOADED and e.in_flight == 0), key=lambda e: e.recency
        )
        if len(idle) < excess:
            # Refused rather than queued: a busy model may stream for minutes (up to the request timeout), and a
            # queue here would hold the client and an admission slot all that time; a 503 lets it retry later or
            # on another replica while the loaded models keep their throughput.
            busy = ", ".join(f"{e.spec.id} ({e.in_flight} in flight)" for e in holding if e not in idle)
            raise NotReady(
                f"model {entry.spec.id!r} is not loaded and LLM_MAX_LOADED_MODELS={self.max_loaded} places are "
                f"held by models in use: {busy}; retry later",
                retry_after_seconds=5,
            )
        return [self._start_unload(victim, reason="least recently used") for victim in idle[:excess]]

    def _start_unload(self, entry: ModelEntry, *, reason: str) -> asyncio.Task[None]:
        engine = entry.engine
        assert engine is not None
        log.info("unloading model", extra={"model": entry.spec.id, "reason": reason})
        entry.engine, entry.state, entry.loaded_at = None, ModelState.NOT_LOADED, None
        task = asyncio.create_task(engine.aclose(), name=f"unload {entry.spec.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def _load(self, entry: ModelEntry, closing: list[asyncio.Task[None]]) -> None:
        started = time.monotonic()
        try:
            if closing:
                await asyncio.gather(*closing, return_exceptions=True)
            entry.backend, entry.backend_reason = choose_backend(self.settings.backend, entry.spec)
            log.info(
                "loading model",
                extra={"model": entry.spec.id, "backend": entry.backend, "reason": entry.backend_reason},
            )
            if entry.spec.source == "hub":
                entry.state = ModelState.DOWNLOADING
            model_path, tokenizer_path = await asyncio.to_thread(fetch, entry.spec, self._progress(entry))
            entry.state = ModelState.LOADING
            config = engine_config(entry.backend, self.settings, entry.spec.id)
            engine = await load_engine(entry.spec, model_path, tokenizer_path, config)
            try:
                await self._warm_up(engine)
            except BaseException:
                await engine.aclose()
                raise
        except asyncio.CancelledError:
            entry.state = ModelState.NOT_LOADED
            raise
        except Exception as exc:  # a failed load fails only this model's requests, never the server
            entry.state, entry.error = ModelState.FAILED, f"{type(exc).__name__}: {exc}"
            entry.failed_at = time.monotonic()
            log.error("model failed to load", extra={"model": entry.spec.id, "error": entry.error})
            return
        if self._closed:  # the app shut down while this model loaded
            await engine.aclose()
            return
        entry.engine, entry.state = engine, ModelState.LOADED
        entry.load_seconds, entry.loaded_at = time.monotonic() - started, time.time()
        entry.loads += 1
        log.info("model ready", extra={"model": entry.spec.id, "seconds": round(entry.load_seconds, 2)})
        for callback in self.on_loaded:
            callback(entry)

    @staticmethod
    def _progress(entry: ModelEntry) -> Callable[[int, int | None], None]:
        def report(done: int, total: int | None) -> None:  # called from the download's thread
            entry.bytes_done, entry.bytes_total = done, total

        return report

    def _retry_in(self, entry: ModelEntry) -> float:
        return (entry.failed_at or 0.0) + self.settings.model_retry_seconds - time.monotonic()

    def _failed(self, entry: ModelEntry) -> NotReady:
        wait = max(self._retry_in(entry), 0.0)
        return NotReady(
            f"model {entry.spec.id!r} failed to load: {entry.error}; the next attempt is in {wait:.0f}s "
            f"(LLM_MODEL_RETRY_SECONDS={self.settings.model_retry_seconds:g})",
            retry_after_seconds=max(1, math.ceil(wait)),
        )

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

    def loaded_engine(self, model: str | None) -> Engine | None:
        entry = self.entry_for(model)
        return entry.engine if entry.state is ModelState.LOADED else None

    async def check_engines(self) -> dict[str, str | None]:
        """Each loaded model's engine checked once (check_health()): None while it serves, else why it died. The
        one walk over the engines that liveness, readiness and the llm_engine_state gauge all read."""
        checked: dict[str, str | None] = {}
        for model, entry in self._entries.items():
            if entry.state is ModelState.LOADED and entry.engine is not None:
                try:
                    await entry.engine.check_health()
                    checked[model] = None
                except EngineDead as exc:
                    checked[model] = exc.message
        return checked

    def readiness(self, checked: Mapping[str, str | None]) -> tuple[bool, str]:
        """Ready once every preloaded model has loaded (and answered its warm-up) and the loaded ones' engines
        live (`checked`: check_engines()). Models loaded on demand do not count: one that fails only fails its
        own requests. A preloaded model unloaded later (LRU, operator) loads again on its next request, so that
        keeps the pod ready."""
        for entry in self._entries.values():
            if not entry.preload:
                continue
            model = entry.spec.id
            if entry.state is ModelState.LOADED and entry.engine is not None:
                if (died := checked.get(model)) is not None:
                    return False, f"engine dead: {died}"  # liveness names the model
            elif entry.state is ModelState.FAILED:
                # Nothing routes requests to an unready pod, so the probe is what retries a preloaded model.
                if self._retry_in(entry) <= 0:
                    self._begin_load(entry)
                return False, f"failed ({model}): {entry.error}"
            elif entry.loads == 0:
                return False, f"{entry.state.value} ({model})"
        return True, "ready"

    async def dead_engine(self) -> str | None:
        """Why this process can no longer serve, if it cannot: a loaded model's engine died. Unlike a load in
        progress or a stall, that never heals, so liveness reports it and the orchestrator restarts the pod."""
        for model, died in (await self.check_engines()).items():
            if died is not None:
                return f"engine dead ({model}): {died}"
        return None

    async def aclose(self) -> None:
        self._closed = True
        tasks = [t for t in (self._preload_task, *(e._task for e in self._entries.values())) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._closing, return_exceptions=True)
        for entry in self._entries.values():
            if entry.engine is not None:
                engine, entry.engine = entry.engine, None
                await engine.aclose()
