"""POST /api/generate and /api/generate/stream on the real embedded model."""

from __future__ import annotations

import pytest

from tests.api.sse import joined_text, parse_events

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"


async def test_generate_returns_text_usage_and_timings(client) -> None:
    response = await client.post("/api/generate", json={"prompt": PROMPT, "max_tokens": 8, "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "smollm2-135m-instruct"
    assert "Paris" in body["text"]
    assert body["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] == 5
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["timings"]["total_seconds"] >= body["timings"]["time_to_first_token_seconds"] > 0


async def test_max_tokens_is_honoured_exactly(client) -> None:
    body = (
        await client.post("/api/generate", json={"prompt": "Count: one, two,", "max_tokens": 5, "temperature": 0})
    ).json()
    assert body["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


async def test_temperature_zero_is_deterministic(client) -> None:
    request = {"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0}
    first = (await client.post("/api/generate", json=request)).json()["text"]
    second = (await client.post("/api/generate", json=request)).json()["text"]
    assert first == second and first


async def test_seed_makes_sampling_reproducible(client) -> None:
    request = {"prompt": "My favourite animal is", "max_tokens": 20, "temperature": 1.5, "top_p": 1.0, "seed": 1234}
    runs = [(await client.post("/api/generate", json=request)).json()["text"] for _ in range(2)]
    assert runs[0] == runs[1]
    others = {(await client.post("/api/generate", json={**request, "seed": seed})).json()["text"] for seed in (1, 2, 3)}
    assert len(others | {runs[0]}) > 1, "different seeds should not all give the same sample"


async def test_stop_sequence_ends_generation_without_emitting_it(client) -> None:
    request = {"prompt": "Count from one to ten: one, two, three,", "max_tokens": 30, "temperature": 0}
    free = (await client.post("/api/generate", json=request)).json()["text"]
    assert "five" in free, free  # the premise of this test: the model continues the count
    stopped = (await client.post("/api/generate", json={**request, "stop": ["five"]})).json()
    assert stopped["finish_reason"] == "stop"
    assert "five" not in stopped["text"]
    assert free.startswith(stopped["text"])


async def test_stop_sequence_spanning_tokens(client) -> None:
    request = {"prompt": "Count from one to ten: one, two, three,", "max_tokens": 30, "temperature": 0}
    free = (await client.post("/api/generate", json=request)).json()["text"]
    # " four, fi" spans several tokens and ends mid-token, so matching must work across token boundaries.
    stop = free[free.index("four") - 1 : free.index("five") + 2]
    stopped = (await client.post("/api/generate", json={**request, "stop": [stop]})).json()
    assert stopped["finish_reason"] == "stop"
    assert stopped["text"] == free[: free.index(stop)]


@pytest.mark.parametrize("stop", [None, ["."]])
async def test_stream_equals_non_stream_at_temperature_zero(client, stop) -> None:
    request = {"prompt": "The best thing about summer is", "max_tokens": 24, "temperature": 0, "stop": stop}
    whole = (await client.post("/api/generate", json=request)).json()
    response = await client.post("/api/generate/stream", json=request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    assert joined_text(events) == whole["text"]
    done = events[-1]
    assert done["type"] == "done"
    assert done["finish_reason"] == whole["finish_reason"]
    assert done["usage"] == whole["usage"]
    assert all(e["type"] == "delta" for e in events[:-1])


async def test_stream_true_in_the_body_streams_and_false_does_not(client) -> None:
    request = {"prompt": "The best thing about summer is", "max_tokens": 12, "temperature": 0}
    routed = (await client.post("/api/generate/stream", json=request)).text
    flagged = await client.post("/api/generate", json={**request, "stream": True})
    assert flagged.status_code == 200
    assert flagged.headers["content-type"].startswith("text/event-stream")
    events = parse_events(flagged.text)
    assert events[-1]["type"] == "done"
    assert joined_text(events) == joined_text(parse_events(routed))
    plain = await client.post("/api/generate", json={**request, "stream": False})
    assert plain.headers["content-type"].startswith("application/json")
    assert plain.json()["text"] == joined_text(events)
    # The /stream route streams whatever the flag says.
    assert parse_events((await client.post("/api/generate/stream", json={**request, "stream": False})).text)


async def test_openapi_documents_both_answers_of_the_plain_route(client) -> None:
    document = (await client.get("/openapi.json")).json()
    for path, schema in (("/api/generate", "GenerateResponse"), ("/api/chat", "ChatResponse")):
        content = document["paths"][path]["post"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
        assert "text/event-stream" in content
