"""POST /v1/completions and GET /v1/models with the openai SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.openai.conftest import MODEL

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"


def test_completion_of_a_string_prompt_equals_the_native_generate(client: openai.OpenAI, http: httpx.Client) -> None:
    native = http.post("/api/generate", json={"prompt": PROMPT, "max_tokens": 8, "temperature": 0}).json()
    completion = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert completion.id.startswith("cmpl-") and completion.object == "text_completion"
    [choice] = completion.choices
    assert choice.text == native["text"] and "Paris" in choice.text
    assert choice.finish_reason == native["finish_reason"]
    assert completion.usage is not None and completion.usage.prompt_tokens == native["usage"]["prompt_tokens"]


def test_a_list_of_one_prompt_is_that_prompt(client: openai.OpenAI) -> None:
    one = client.completions.create(model=MODEL, prompt=[PROMPT], max_tokens=6, temperature=0)
    plain = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
    assert one.choices[0].text == plain.choices[0].text


def test_stop_sequence_and_seed(client: openai.OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stop=["."])
    assert "." not in completion.choices[0].text and completion.choices[0].finish_reason == "stop"
    a, b = (
        client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=1, seed=7)
        for _ in range(2)
    )
    assert a.choices[0].text == b.choices[0].text


async def test_streamed_completion_with_usage(async_client: openai.AsyncOpenAI) -> None:
    whole = await async_client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    stream = await async_client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    *with_choices, last = chunks
    assert last.choices == [] and last.usage == whole.usage
    assert "".join(chunk.choices[0].text for chunk in with_choices) == whole.choices[0].text
    assert with_choices[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [model.id for model in models.data] == [MODEL]
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model" and model.created > 0 and model.owned_by


def test_a_model_outside_the_allow_list_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as retrieved:
        client.models.retrieve("gpt-4o")
    assert retrieved.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as chat:
        client.chat.completions.create(model="org/repo:file.gguf", messages=[{"role": "user", "content": "Hi"}])
    assert chat.value.code == "model_not_found" and chat.value.param == "model"
    assert chat.value.type == "invalid_request_error"


def test_the_body_vllm_bench_serve_sends_is_served(http) -> None:
    """`vllm bench serve --backend openai` (vLLM 0.26-0.32) posts exactly this: its neutral vLLM extensions
    (repetition_penalty 1.0, ignore_eos) must be accepted for the tool to measure this service at all."""
    body = {
        "model": MODEL,
        "prompt": "The capital of France is",
        "repetition_penalty": 1.0,
        "max_tokens": 4,
        "logprobs": None,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "temperature": 0.0,
    }
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]" and '"completion_tokens":4' in frames[-2]
