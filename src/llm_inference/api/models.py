"""GET /api/llms: every allowed model with its backend, format, context length and load state."""

from __future__ import annotations

from litestar import get
from litestar.datastructures import State

from llm_inference.api.schemas import ModelCard, ModelList


@get("/api/llms", tags=["models"], summary="List the allowed models and their state")
async def list_models(state: State) -> ModelList:
    registry = state.service.registry
    cards = []
    for entry in registry.entries():
        info = entry.engine.info() if entry.engine else None
        cards.append(
            ModelCard(
                id=entry.spec.id,
                backend=entry.backend,
                backend_reason=entry.backend_reason,
                format=info.model_format
                if info
                else ("gguf" if entry.spec.is_gguf or entry.spec.source == "embedded" else None),
                context_length=info.context_length if info else None,
                state=entry.state.value,
                default=entry.spec.id == registry.default_model,
                error=entry.error,
            )
        )
    return ModelList(models=cards)
