"""/api's share of OpenAI's vocabulary on the real embedded model: log probabilities on generate, chat, their
streams and batches; penalties, min_p and logit_bias accepted with their bounds."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.sse import joined_text, parse_events

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"
GREEDY = {"prompt": PROMPT, "max_tokens": 6, "temperature": 0}


def check_entries(entries: list[Any], text: str, alternatives: int) -> None:
    assert entries and "".join(entry["token"] for entry in entries) == text, (entries, text)
    for entry in entries:
        assert entry["logprob"] <= 0 and bytes(entry["bytes"]).decode() == entry["token"]
        assert len(entry["top_logprobs"]) == alternatives
        if alternatives:
            assert entry["top_logprobs"][0]["token"] == entry["token"]  # greedy: its own top-1


async def test_generate_with_logprobs_names_each_token(client) -> None:
    body = (await client.post("/api/generate", json={**GREEDY, "logprobs": True, "top_logprobs": 2})).json()
    check_entries(body["logprobs"], body["text"], 2)
    plain = (await client.post("/api/generate", json=GREEDY)).json()
    assert "logprobs" not in plain and plain["text"] == body["text"]


async def test_streamed_generate_and_chat_carry_logprobs_on_their_deltas(client) -> None:
    response = await client.post("/api/generate/stream", json={**GREEDY, "logprobs": True})
    events = parse_events(response.text)
    entries = [entry for event in events if event["type"] == "delta" for entry in event.get("logprobs", [])]
    check_entries(entries, joined_text(events), 0)
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0, "logprobs": True}
    whole = (await client.post("/api/chat", json=chat)).json()
    check_entries(whole["logprobs"], whole["message"]["content"], 0)
    streamed = parse_events((await client.post("/api/chat/stream", json=chat)).text)
    assert [e for event in streamed if event["type"] == "delta" for e in event["logprobs"]] == whole["logprobs"]


async def test_batch_results_carry_logprobs(client) -> None:
    body = (
        await client.post(
            "/api/batch/generate",
            json={"prompts": [PROMPT, "Once upon a time"], "max_tokens": 3, "temperature": 0, "logprobs": True},
        )
    ).json()
    for result in body["results"]:
        check_entries(result["logprobs"], result["text"], 0)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"min_p": -0.1}, "min_p"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"1": -101}}, "logit_bias"),
        ({"logit_bias": {"49152": 1}}, "logit_bias"),
    ],
)
async def test_bad_vocabulary_fields_name_themselves(client, fields: dict[str, Any], param: str) -> None:
    response = await client.post("/api/generate", json={**GREEDY, **fields})
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["param"] == param, response.text


async def test_penalties_min_p_and_bias_are_served(client) -> None:
    fields = {"presence_penalty": 1, "frequency_penalty": 1, "repetition_penalty": 1.2, "min_p": 0.05}
    response = await client.post("/api/generate", json={**GREEDY, **fields, "logit_bias": {"42": -100}})
    assert response.status_code == 200, response.text
    assert response.json()["text"]
