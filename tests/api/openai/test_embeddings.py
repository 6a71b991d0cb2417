"""/v1/embeddings through the real openai SDK (its default base64 encoding and plain floats)."""

from __future__ import annotations

import math

import openai
import pytest

from tests.api.openai.conftest import MODEL

pytestmark = pytest.mark.model


def test_the_sdk_gets_the_same_normalized_vectors_as_the_native_api(client, async_client, http) -> None:
    texts = ["The cat sat on the mat.", "Shares dropped steeply."]
    native = http.post("/api/embeddings", json={"input": texts}).json()
    created = client.embeddings.create(model=MODEL, input=texts)  # the SDK asks for base64 and decodes it
    assert created.model == MODEL and [d.index for d in created.data] == [0, 1]
    assert created.usage.prompt_tokens == created.usage.total_tokens == native["usage"]["prompt_tokens"]
    for ours, theirs in zip(created.data, native["embeddings"], strict=True):
        assert len(ours.embedding) == 576
        assert math.isclose(math.fsum(x * x for x in ours.embedding), 1.0, rel_tol=1e-4)
        assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(ours.embedding, theirs, strict=True))
    floats = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
    assert floats.data[0].embedding == native["embeddings"][0]


async def test_async_sdk_and_refusals(async_client) -> None:
    created = await async_client.embeddings.create(model=MODEL, input="hello", dimensions=576)
    assert len(created.data[0].embedding) == 576
    with pytest.raises(openai.BadRequestError) as refused:
        await async_client.embeddings.create(model=MODEL, input="hello", dimensions=64)
    assert refused.value.body["param"] == "dimensions"
    with pytest.raises(openai.NotFoundError):
        await async_client.embeddings.create(model="someone/else", input="hello")
    with pytest.raises(openai.BadRequestError) as empty:
        await async_client.embeddings.create(model=MODEL, input="")
    assert empty.value.body["param"] == "input"
