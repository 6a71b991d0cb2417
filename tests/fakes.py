"""Fakes shared by the fast tests: a scripted engine and the one-model registry the service core runs on. They
drive the request path's edge cases a real model cannot reach on demand; the real model covers the same paths
(a fake is never the only test of a feature)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

from llm_inference.engines.base import ChatMessage, Chunk, EngineInfo, EngineStats, FinishReason, GenerationRequest
from llm_inference.errors import EngineFailure
from llm_inference.model_spec import ModelSpec
from llm_inference.models.registry import ModelEntry, ModelLease, ModelState
from llm_inference.service import InferenceService
from tests.conftest import make_settings


@dataclass
class ScriptedEngine:
    """Yields `pieces` one per step, `step_seconds` apart; records what was started and what was closed."""

    pieces: Sequence[str] = ("Hel", "lo", "!")
    step_seconds: float = 0.0
    fail_after: int | None = None  # raise EngineFailure after this many pieces
    context_length: int = 64
    started: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    decode_steps: int = 0  # one per piece yielded

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        self.started.append(request.request_id)
        prompt_tokens = len(request.prompt_token_ids or ())
        try:
            for index, piece in enumerate(self.pieces):
                if self.fail_after is not None and index == self.fail_after:
                    raise EngineFailure("the scripted engine failed")
                await asyncio.sleep(self.step_seconds)
                self.decode_steps += 1
                last = index == len(self.pieces) - 1
                yield Chunk(piece, prompt_tokens, index + 1, FinishReason.STOP if last else None)
        finally:
            self.closed.append(request.request_id)

    async def check_health(self) -> None: ...

    async def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def vocab_size(self) -> int:
        return 1000

    async def render_chat(self, messages: Sequence[ChatMessage], tools: object = None) -> str:
        return " ".join(m.content for m in messages)

    def info(self) -> EngineInfo:
        return EngineInfo(backend="scripted", model_format="none", context_length=self.context_length)

    def stats(self) -> EngineStats:
        return EngineStats(running=len(self.started) - len(self.closed), waiting=0)

    async def aclose(self) -> None: ...


class OneModel:
    """The registry's part the core uses: one model, always loaded, whose entry counts the leases held on it."""

    default_model = "scripted"

    def __init__(self, engine: ScriptedEngine) -> None:
        self.entry = ModelEntry(ModelSpec(id="scripted", source="local"), state=ModelState.LOADED, engine=engine)

    async def acquire(self, model: str | None) -> ModelLease:
        self.entry.in_flight += 1
        return ModelLease(self.entry)

    def loaded_engine(self, model: str | None) -> ScriptedEngine:
        return self.entry.engine  # type: ignore[return-value]

    async def check_engines(self) -> dict[str, str | None]:
        return {"scripted": None}

    def readiness(self, checked: object) -> tuple[bool, str]:
        return True, "ready"


def idle(service: InferenceService) -> bool:
    """No admission slot and no model lease is held: every path gives both back."""
    return service.admission.in_flight == 0 and service.registry.entry.in_flight == 0  # type: ignore[attr-defined]


def service_with(engine: ScriptedEngine, **settings: str) -> InferenceService:
    env = {"LLM_MAX_CONCURRENT_REQUESTS": "1", "LLM_MAX_QUEUED_REQUESTS": "1", **settings}
    return InferenceService(settings=make_settings(**env), registry=OneModel(engine))  # type: ignore[arg-type]
