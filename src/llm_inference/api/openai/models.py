"""GET /v1/models and /v1/models/{id}: the allow-list in OpenAI's shape (every allowed model, loaded or not,
as OpenAI lists every model a key may use)."""

from __future__ import annotations

import time

from litestar import get
from litestar.datastructures import State
from litestar.params import FromPath

from llm_inference.api.openai.responses import ModelCard, ModelList
from llm_inference.errors import ModelNotFound
from llm_inference.models.registry import ModelEntry

# OpenAI's `created` is when the model was made; a served file does not record that, so this is when the
# process started serving (stable across calls, which clients that cache the list rely on).
_SERVING_SINCE = int(time.time())


def _card(entry: ModelEntry) -> ModelCard:
    spec = entry.spec
    owner = spec.repo.split("/")[0] if spec.source == "hub" and spec.repo else "llm-inference"
    return ModelCard(id=spec.id, created=_SERVING_SINCE, owned_by=owner)


@get("/models", summary="List the allowed models (OpenAI-compatible)")
async def list_models(state: State) -> ModelList:
    return ModelList(data=[_card(entry) for entry in state.service.registry.entries()])


# `path`: hub model ids contain slashes (org/repo:file.gguf).
@get("/models/{model_id:path}", summary="Retrieve an allowed model (OpenAI-compatible)")
async def retrieve_model(model_id: FromPath[str], state: State) -> ModelCard:
    model_id = model_id.lstrip("/")
    if not model_id:  # the registry would read an empty id as "the default model"
        raise ModelNotFound("the model id is empty", param="model")
    return _card(state.service.registry.entry_for(model_id))
