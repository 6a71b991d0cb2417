"""Tools through a chat template's own format, on the real model: the embedded GGUF served with Qwen2.5's chat
template from a tokenizer repo (`repo:file.gguf@tokenizer-repo`, from a fake hub), so the template writes the
tools and earlier calls in Hermes' `<tool_call>` blocks. Shown a few such calls, the model writes one itself
under tool_choice auto, and the service reads it back as a tool call, whole and streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llm_inference.model_spec import EMBEDDED_MODEL
from tests.api.openai.conftest import sdk
from tests.fake_hub import FakeHub
from tests.server import ServerProcess

pytestmark = pytest.mark.model

GGUF_REPO = "test-org/smollm2-gguf"
TOKENIZER_REPO = "test-org/qwen-template"
TEMPLATE = (Path(__file__).parents[2] / "data" / "chat_templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def shown_call(index: int, city: str) -> list[dict[str, Any]]:
    """An earlier turn: the question and the model's call, Hermes-rendered by the template (its result and
    the answer left out: shown them, the 135M model writes a <tool_response> of its own instead of a call)."""
    call_id = f"call_{index}"
    return [
        {"role": "user", "content": f"What is the weather in {city}?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
                }
            ],
        },
    ]


FEW_SHOT = [
    {"role": "system", "content": "You answer weather questions by calling get_weather."},
    *shown_call(1, "Paris"),
    *shown_call(2, "Berlin"),
    *shown_call(3, "Madrid"),
    {"role": "user", "content": "What is the weather in Rome?"},
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    files = {"tokenizer_config.json": json.dumps({"chat_template": TEMPLATE, "eos_token": "<|im_end|>"}).encode()}
    tmp = tmp_path_factory.mktemp("native-tools")
    with FakeHub(GGUF_REPO, small_repos={TOKENIZER_REPO: files}) as hub:
        hub.release.set()
        spec = f"{hub.spec}@{TOKENIZER_REPO}"
        env = {
            "LLM_ALLOWED_MODELS": f"{spec},{EMBEDDED_MODEL}",
            "LLM_PRELOAD_MODELS": spec,
            "LLM_MAX_CONCURRENT_REQUESTS": "2",
            **hub.environment(tmp / "hf"),
        }
        with ServerProcess(env, log_path=tmp / "server.log") as process:
            process.wait_for("/health/ready", 200, timeout=300)
            yield process, spec


def test_the_template_format_is_detected_and_shown(served: tuple[ServerProcess, str]) -> None:
    server, spec = served
    client = sdk(server.url)
    # A whole round, rendered by the template: the tools in <tools>, the call in a <tool_call> block, its
    # result in a <tool_response> (a template that met a field it cannot render would fail the request).
    round_trip = [
        *shown_call(1, "Paris"),
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 20 degrees."},
        {"role": "user", "content": "And in Rome?"},
    ]
    with_tools = client.chat.completions.create(
        model=spec, messages=round_trip, tools=[WEATHER], tool_choice="none", max_tokens=1, temperature=0
    )
    without = client.chat.completions.create(model=spec, messages=round_trip, max_tokens=1, temperature=0)
    assert with_tools.usage is not None and without.usage is not None
    assert with_tools.usage.prompt_tokens == without.usage.prompt_tokens  # tool_choice none shows no tools
    offered = client.chat.completions.create(
        model=spec, messages=round_trip, tools=[WEATHER], max_tokens=1, temperature=0
    )
    assert offered.usage is not None and offered.usage.prompt_tokens > without.usage.prompt_tokens + 50


def test_a_call_in_the_templates_format_is_read_back(served: tuple[ServerProcess, str]) -> None:
    server, spec = served
    client = sdk(server.url)
    whole = client.chat.completions.create(
        model=spec, messages=FEW_SHOT, tools=[WEATHER], max_tokens=48, temperature=0
    ).choices[0]
    assert whole.finish_reason == "tool_calls", whole
    [call] = whole.message.tool_calls or []
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)
    assert not (whole.message.content or "").strip(), "the <tool_call> block leaked into the answer text"
    chunks = list(
        client.chat.completions.create(
            model=spec, messages=FEW_SHOT, tools=[WEATHER], max_tokens=48, temperature=0, stream=True
        )
    )
    pieces = [p for c in chunks for p in (c.choices[0].delta.tool_calls or [])]
    assert pieces and pieces[0].function is not None and pieces[0].function.name == "get_weather"
    assert "".join(p.function.arguments or "" for p in pieces if p.function) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert "<tool_call>" not in "".join(c.choices[0].delta.content or "" for c in chunks)


def test_required_is_constrained_whatever_the_template(served: tuple[ServerProcess, str]) -> None:
    server, spec = served
    choice = (
        sdk(server.url)
        .chat.completions.create(
            model=spec,
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER],
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=64,
            temperature=1.0,
            seed=5,
        )
        .choices[0]
    )
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls or []
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_the_openai_sdk_sees_an_error_for_an_unknown_model_tool_mix(served: tuple[ServerProcess, str]) -> None:
    server, _ = served
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(server.url).chat.completions.create(
            model=EMBEDDED_MODEL,
            messages=FEW_SHOT,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            max_tokens=8,
        )
    assert refused.value.body is not None and "tool_choice.function.name" in str(refused.value.body)
