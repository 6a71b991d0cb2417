"""A conversation's next turn reuses the KV cells of the turns before it, on /api/chat, /v1/chat/completions
and sessions alike, and /metrics says so (llm_prefix_cache_queries_total / llm_prefix_cache_hits_total)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.telemetry.scrape import Scrape

pytestmark = pytest.mark.model

LABELS = {"model": "smollm2-135m-instruct", "backend": "llamacpp"}
HISTORY = [
    {"role": "system", "content": "You are a helpful assistant who answers in one short sentence."},
    {"role": "user", "content": "Name a large city in France, and tell me one thing it is known for."},
]
FOLLOW_UP = {"role": "user", "content": "And one in Italy?"}
ANSWER = {"max_tokens": 12, "temperature": 0}


async def counters(client: AsyncTestClient) -> tuple[float, float]:  # type: ignore[type-arg]
    scraped = Scrape((await client.get("/metrics")).text)
    queries = scraped.value("llm_prefix_cache_queries_total", **LABELS)
    return queries, scraped.value("llm_prefix_cache_hits_total", **LABELS)


async def turn(client: AsyncTestClient, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, float, float]:  # type: ignore[type-arg]
    """One request: its answer, its prompt tokens, and what the prefix-cache counters moved by."""
    queries, hits = await counters(client)
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    after_queries, after_hits = await counters(client)
    answer = response.json()
    return answer, answer["usage"]["prompt_tokens"], after_queries - queries, after_hits - hits


def content(path: str, answer: dict[str, Any]) -> str:
    return str(answer["choices"][0]["message"]["content"] if path.startswith("/v1") else answer["message"]["content"])


async def test_the_next_turn_of_a_conversation_reuses_the_cells_of_the_turns_before(client) -> None:
    for path, extra in (("/api/chat", {}), ("/v1/chat/completions", {"model": LABELS["model"]})):
        first, first_prompt, queries, _ = await turn(client, path, {"messages": HISTORY, **ANSWER, **extra})
        assert queries == first_prompt  # every prompt token is looked up once
        history = [*HISTORY, {"role": "assistant", "content": content(path, first)}, FOLLOW_UP]
        _, second_prompt, queries, hits = await turn(client, path, {"messages": history, **ANSWER, **extra})
        assert queries == second_prompt
        # The whole first prompt is found (its cells stayed in the slot); only the answer and the new turn are read.
        assert first_prompt <= hits < second_prompt, (path, first_prompt, hits, second_prompt)


async def test_a_sessions_next_turn_reuses_its_cells(client) -> None:
    created = await client.post("/api/sessions", json={"system": HISTORY[0]["content"]})
    assert created.status_code in (200, 201), created.text
    session = {"session_id": created.json()["id"], **ANSWER}
    _, first_prompt, _, _ = await turn(client, "/api/chat", {"messages": [HISTORY[1]], **session})
    _, second_prompt, _, hits = await turn(client, "/api/chat", {"messages": [FOLLOW_UP], **session})
    assert first_prompt <= hits < second_prompt, (first_prompt, hits, second_prompt)
