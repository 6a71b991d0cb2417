"""The /v1 router: OpenAI's endpoints over the same service core as /api (admission, limits, timeouts,
keys, rate limits, telemetry). Left out of /openapi.json, which documents this service's own API: the
contract here is OpenAI's published one, minus what docs/openai.md lists as refused."""

from __future__ import annotations

from litestar import Router

from llm_inference.api.openai.chat import ChatCompletionsController
from llm_inference.api.openai.completions import CompletionsController
from llm_inference.api.openai.embeddings import create_embeddings
from llm_inference.api.openai.errors import PREFIX
from llm_inference.api.openai.models import list_models, retrieve_model
from llm_inference.api.openai.responses_api.controller import ResponsesController


def openai_router() -> Router:
    return Router(
        PREFIX,
        route_handlers=[
            ChatCompletionsController,
            CompletionsController,
            ResponsesController,
            create_embeddings,
            list_models,
            retrieve_model,
        ],
        tags=["openai"],
        include_in_schema=False,
    )
