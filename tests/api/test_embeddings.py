"""POST /api/embeddings on the real embedded model (llama.cpp, mean pooling over its last hidden states)."""

from __future__ import annotations

import math

import pytest

from tests.api.test_errors import LONG_PROMPT, assert_error

pytestmark = pytest.mark.model

SIMILAR = [
    ("The cat sat on the mat.", "A cat was sitting on the rug."),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
]
UNRELATED = [
    ("The cat sat on the mat.", "Shares dropped steeply on Wall Street today."),
    ("How do I reset my password?", "A cat was sitting on the rug."),
]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def embed(client, texts: list[str] | str) -> dict:
    response = await client.post("/api/embeddings", json={"input": texts})
    assert response.status_code == 200, response.text
    return response.json()


async def test_one_normalized_vector_per_text_in_order(client) -> None:
    single = await embed(client, "The cat sat on the mat.")
    assert single["model"] == "smollm2-135m-instruct" and single["dimensions"] == 576  # SmolLM2-135M's width
    [vector] = single["embeddings"]
    assert len(vector) == 576 and math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)
    assert single["usage"]["prompt_tokens"] == single["usage"]["total_tokens"] > 5

    batch = await embed(client, ["Shares dropped steeply.", "The cat sat on the mat.", "Shares dropped steeply."])
    first, second, third = batch["embeddings"]
    assert second == vector  # a text's vector does not depend on the other texts of its request
    assert first == third and first != second


async def test_similar_texts_are_closer_than_unrelated_ones(client) -> None:
    similar = [cosine(*(await embed(client, list(pair)))["embeddings"]) for pair in SIMILAR]
    unrelated = [cosine(*(await embed(client, list(pair)))["embeddings"]) for pair in UNRELATED]
    assert min(similar) > max(unrelated), (similar, unrelated)


async def test_bad_embedding_requests_name_the_field(client) -> None:
    assert_error(await client.post("/api/embeddings", json={"input": ""}), 422, "invalid_parameter", "input")
    assert_error(await client.post("/api/embeddings", json={"input": []}), 422, "invalid_parameter", "input")
    assert_error(await client.post("/api/embeddings", json={"input": ["x"] * 257}), 422, "invalid_parameter", "input")
    assert_error(await client.post("/api/embeddings", json={}), 422, "invalid_parameter", "input")
    too_long = await client.post("/api/embeddings", json={"input": ["short", LONG_PROMPT]})
    error = assert_error(too_long, 400, "context_length_exceeded", "input[1]")
    assert "1024 tokens" in error["message"]
    assert_error(
        await client.post("/api/embeddings", json={"input": "x", "model": "other/model"}),
        404,
        "model_not_found",
        "model",
    )
    assert (await client.post("/api/embeddings", json={"input": "still serving"})).status_code == 200
