"""POST /api/embeddings: normalized vectors for one text or a list of texts."""

from __future__ import annotations

from litestar import post
from litestar.datastructures import State
from litestar.params import JSONBody

from llm_inference.api.native.docs import ERROR_RESPONSES
from llm_inference.api.native.schemas import EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage
from llm_inference.service.embeddings import embed


@post("/api/embeddings", status_code=200, responses=ERROR_RESPONSES, tags=["inference"], summary="Embed texts")
async def embeddings(data: JSONBody[EmbeddingsRequest], state: State) -> EmbeddingsResponse:
    texts = [data.input] if isinstance(data.input, str) else data.input
    result = await embed(state.service, data.model, texts)
    return EmbeddingsResponse(
        model=result.model,
        embeddings=result.vectors,
        dimensions=len(result.vectors[0]),
        usage=EmbeddingsUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
    )
