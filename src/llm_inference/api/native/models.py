"""GET /api/llms: every allowed model with its state, backend, format, context length and last use; and the
operators' POST /api/llms/{id}/load and /api/llms/{id}/unload."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from llm_inference.api.http.errors import ErrorResponse
from llm_inference.api.native.schemas import DownloadProgress, ModelCard, ModelList
from llm_inference.models.registry import ModelEntry, ModelRegistry, ModelState

_ACTIONS = ("load", "unload")


def model_card(entry: ModelEntry, registry: ModelRegistry) -> ModelCard:
    info = entry.engine_info()
    downloading = entry.state is ModelState.DOWNLOADING
    return ModelCard(
        id=entry.spec.id,
        backend=entry.backend,
        backend_reason=entry.backend_reason,
        format=info.model_format if info else ("gguf" if entry.spec.is_gguf else None),
        context_length=info.context_length if info else None,
        state=entry.state.value,
        default=entry.spec.id == registry.default_model,
        preload=entry.preload,
        in_flight=entry.in_flight,
        loads=entry.loads,
        last_used=datetime.fromtimestamp(entry.last_used, UTC).isoformat() if entry.last_used else None,
        error=entry.error,
        download=DownloadProgress(entry.bytes_done or 0, entry.bytes_total) if downloading else None,
    )


@get("/api/llms", tags=["models"], summary="List the allowed models and their state")
async def list_models(state: State) -> ModelList:
    registry = state.service.registry
    return ModelList(models=[model_card(entry, registry) for entry in registry.entries()])


# Model ids contain '/' and ':' (org/repo:file.gguf), so the id is a path parameter that runs to the action, the
# last segment: POST /api/llms/org/repo:file.gguf/load. No body.
@post(
    "/api/llms/{target:path}",
    tags=["models"],
    status_code=200,
    opt={"no_body": True},
    summary="Load or unload a model: POST /api/llms/{model id}/load or /api/llms/{model id}/unload",
    description="Load waits for the load to end (it retries a failed model at once). Unload refuses a model "
    "with requests in flight (409). The answer is the model's card as GET /api/llms shows it.",
    responses={
        404: ResponseSpec(ErrorResponse, description="Not a model of LLM_ALLOWED_MODELS, or not load / unload"),
        409: ResponseSpec(ErrorResponse, description="Unload: the model has requests in flight, or is loading"),
        503: ResponseSpec(ErrorResponse, description="Load: the model failed to load, or no place can be freed"),
    },
)
async def load_or_unload(target: FromPath[str], state: State) -> ModelCard:
    # Litestar hands the path over with one leading '/' and '//' collapsed, so a local model's absolute path
    # (/models/x.gguf, sent as /api/llms//models/x.gguf/load) arrives without its own leading '/'.
    model, _, action = target.strip("/").rpartition("/")
    if not model or action not in _ACTIONS:
        raise NotFoundException(
            f"POST /api/llms/{{model id}}/load or /api/llms/{{model id}}/unload; got /api/llms/{target.strip('/')}"
        )
    registry: ModelRegistry = state.service.registry
    known = {entry.spec.id for entry in registry.entries()}
    if model not in known and f"/{model}" in known:
        model = f"/{model}"
    entry = await (registry.load(model) if action == "load" else registry.unload(model))
    return model_card(entry, registry)
