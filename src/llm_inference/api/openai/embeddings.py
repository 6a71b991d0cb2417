"""POST /v1/embeddings in OpenAI's shape, over the same service call as /api/embeddings."""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Literal

import msgspec
from litestar import post
from litestar.datastructures import State
from litestar.params import JSONBody
from msgspec import Meta

from llm_inference.api.openai.schemas import ModelId
from llm_inference.errors import UnsupportedParameter
from llm_inference.service.embeddings import embed

Text = Annotated[str, Meta(min_length=1)]


class EmbeddingRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    input: Text | Annotated[list[Text], Meta(min_length=1, max_length=256)]
    model: ModelId
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None


class EmbeddingData(msgspec.Struct):
    embedding: list[float] | str  # floats, or base64 of little-endian float32 (encoding_format=base64)
    index: int
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, kw_only=True):
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
    object: Literal["list"] = "list"


def _base64(vector: list[float]) -> str:
    # What OpenAI's SDKs send by default and decode with numpy.frombuffer(..., dtype="float32").
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


@post("/embeddings", status_code=200, summary="Embed texts (OpenAI-compatible)")
async def create_embeddings(data: JSONBody[EmbeddingRequest], state: State) -> EmbeddingList:
    texts = [data.input] if isinstance(data.input, str) else data.input
    result = await embed(state.service, data.model, texts)
    width = len(result.vectors[0])
    if data.dimensions is not None and data.dimensions != width:
        # Truncating would need a model trained for it (Matryoshka); this one is not.
        raise UnsupportedParameter(
            f"dimensions: this model gives {width}-dimensional embeddings only", param="dimensions"
        )
    encode = _base64 if data.encoding_format == "base64" else list
    return EmbeddingList(
        data=[EmbeddingData(embedding=encode(vector), index=i) for i, vector in enumerate(result.vectors)],
        model=result.model,
        usage=EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
    )
