"""POST /api/batch/generate on the real embedded model: one result per prompt, in order, batched."""

from __future__ import annotations

import pytest

from tests.api.test_errors import LONG_PROMPT, assert_error

pytestmark = pytest.mark.model

PROMPTS = ["The capital of France is", "Count from one to ten: one, two, three,", "Once upon a time"]
SAMPLING = {"max_tokens": 8, "temperature": 0}


async def test_each_result_is_what_a_single_request_gives_in_order(client) -> None:
    response = await client.post("/api/batch/generate", json={"prompts": PROMPTS, **SAMPLING})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "smollm2-135m-instruct"
    assert len(body["results"]) == len(PROMPTS)
    for prompt, result in zip(PROMPTS, body["results"], strict=True):
        single = (await client.post("/api/generate", json={"prompt": prompt, **SAMPLING})).json()
        assert result == {"text": single["text"], "finish_reason": single["finish_reason"], "usage": single["usage"]}
    assert "Paris" in body["results"][0]["text"]


async def test_a_failing_prompt_takes_its_place_and_the_others_still_run(client, service) -> None:
    prompts = [PROMPTS[0], LONG_PROMPT, "a\u0000b", PROMPTS[2]]
    body = (await client.post("/api/batch/generate", json={"prompts": prompts, **SAMPLING})).json()
    first, too_long, nul, last = body["results"]
    assert "Paris" in first["text"] and "error" not in first
    assert too_long == {
        "error": {"type": "context_length_exceeded", "param": "prompts[1]", "message": too_long["error"]["message"]}
    }
    assert "1024" in too_long["error"]["message"]
    assert nul["error"]["param"] == "prompts[2]" and "NUL" in nul["error"]["message"]
    assert last["finish_reason"] in {"stop", "length"} and last["text"]
    assert service.admission.in_flight == 0


async def test_prompts_beyond_the_free_admission_slots_are_overloaded_alone(client, service) -> None:
    admission = service.admission
    held = [admission.admit() for _ in range(admission.capacity - 2)]  # two slots left
    try:
        body = (await client.post("/api/batch/generate", json={"prompts": PROMPTS, **SAMPLING})).json()
    finally:
        for slot in held:
            slot.release()
    ran, also_ran, refused = body["results"]
    assert ran["text"] and also_ran["text"]
    assert refused["error"]["type"] == "overloaded" and "LLM_MAX_CONCURRENT_REQUESTS" in refused["error"]["message"]
    assert admission.in_flight == 0


async def test_whole_request_errors_answer_the_request(client) -> None:
    error = assert_error(
        await client.post("/api/batch/generate", json={"prompts": ["x"] * 33}), 422, "invalid_parameter", "prompts"
    )
    assert error["message"] == "33 prompts exceed LLM_MAX_BATCH_PROMPTS=32"
    assert_error(await client.post("/api/batch/generate", json={"prompts": []}), 422, "invalid_parameter", "prompts")
    assert_error(
        await client.post("/api/batch/generate", json={"prompts": ["a", ""]}), 422, "invalid_parameter", "prompts[1]"
    )
    assert_error(
        await client.post("/api/batch/generate", json={"prompts": ["a"], "max_tokens": 9000}),
        422,
        "invalid_parameter",
        "max_tokens",
    )
    assert_error(
        await client.post("/api/batch/generate", json={"prompts": ["a"], "model": "someone/else"}),
        404,
        "model_not_found",
        "model",
    )
    assert_error(await client.post("/api/batch/generate", json={"prompt": "a"}), 422, "invalid_parameter", "prompt")
