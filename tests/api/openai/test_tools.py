"""Tool calling through the real openai SDK against a real Granian process serving the embedded model (whose
template has no tool format, so the generic constrained JSON format is used): calls that must be made parse
and match their function's parameters in many sampled runs, streamed calls add up to the same calls, a tool
round replays, and bad tool definitions are refused naming the field."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.api.openai.conftest import MODEL
from tests.weather_tool import WEATHER_PARAMETERS

pytestmark = pytest.mark.model

RUNS = 12
TIME_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "maxLength": 24}},
    "required": ["timezone"],
}
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "The time in a timezone.", "parameters": TIME_PARAMETERS},
    },
]
SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
ASK: Any = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def check_calls(message: Any) -> list[Any]:
    """Every call names an offered function and its arguments parse and match that function's parameters."""
    calls = message.tool_calls or []
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_"), call
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    assert len({call.id for call in calls}) == len(calls), calls
    return calls


def test_required_calls_match_their_parameters_in_many_sampled_runs(client: openai.OpenAI) -> None:
    patient = client.with_options(timeout=300)

    def one(seed: int) -> Any:
        return patient.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=96,
            temperature=1.0,
            seed=seed,
        ).choices[0]

    with ThreadPoolExecutor(10) as pool:
        choices = list(pool.map(one, range(RUNS)))
    for choice in choices:
        assert choice.finish_reason == "tool_calls", choice
        assert len(check_calls(choice.message)) == 1, choice.message
        assert choice.message.content is None


def test_parallel_calls_are_bounded_and_each_one_matches(client: openai.OpenAI) -> None:
    choice = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=400, temperature=0.8, seed=3
    ).choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert 1 <= len(check_calls(choice.message)) <= 8


def test_a_named_function_is_the_one_called(client: openai.OpenAI) -> None:
    for seed in range(3):
        choice = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            max_tokens=64,
            temperature=1.0,
            seed=seed,
        ).choices[0]
        assert choice.finish_reason == "tool_calls", choice
        [call] = check_calls(choice.message)
        assert call.function.name == "get_time"


def test_auto_answers_or_calls_and_either_is_well_formed(client: openai.OpenAI) -> None:
    seen = set()
    for seed in range(6):
        choice = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, max_tokens=160, temperature=1.0, seed=seed
        ).choices[0]
        if choice.message.tool_calls:
            # Calls, or (sampled, up to 8 of them) calls cut short by max_tokens: the last one's arguments then
            # stop mid-way, as with OpenAI's API.
            assert choice.finish_reason in ("tool_calls", "length"), choice
            if choice.finish_reason == "tool_calls":
                check_calls(choice.message)
            seen.add("call")
        else:
            assert choice.finish_reason in ("stop", "length"), choice
            assert isinstance(choice.message.content, str), choice
            assert not choice.message.content.startswith('{"response"'), "the generic format leaked into the answer"
            seen.add("answer")
    assert seen, "no run finished"


def test_tool_choice_none_answers_in_plain_text(client: openai.OpenAI) -> None:
    choice = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=24, temperature=0
    ).choices[0]
    assert choice.message.tool_calls is None
    assert choice.message.content and not choice.message.content.lstrip().startswith("{")


def test_streamed_calls_add_up_to_the_unstreamed_ones(client: openai.OpenAI) -> None:
    request: Any = {
        "model": MODEL,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": "required",
        "max_tokens": 400,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**request).choices[0]
    chunks = list(client.chat.completions.create(**request, stream=True))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for piece in chunk.choices[0].delta.tool_calls or []:
            if piece.id is not None:  # a call's first piece: its id, type and name
                assert piece.index not in calls and piece.type == "function" and piece.function is not None
                calls[piece.index] = {"name": piece.function.name or "", "arguments": ""}
            assert piece.function is not None and piece.function.arguments is not None
            calls[piece.index]["arguments"] += piece.function.arguments
    assert len(chunks[0].choices) == 1 and chunks[0].choices[0].delta.role == "assistant"
    expected = [{"name": c.function.name, "arguments": c.function.arguments} for c in check_calls(whole.message)]
    assert [calls[i] for i in sorted(calls)] == expected


def test_a_tool_round_replays_and_the_model_goes_on(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64,
        temperature=0,
    ).choices[0]
    [call] = check_calls(first.message)
    history: Any = [
        *ASK,
        first.message.model_dump(exclude_none=True),  # as agents send it back: content null, tool_calls
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees Celsius and sunny"},
    ]
    assert "content" not in history[1] and history[1]["tool_calls"]
    second = client.chat.completions.create(
        model=MODEL, messages=history, tools=TOOLS, tool_choice="none", max_tokens=32, temperature=0
    ).choices[0]
    assert second.finish_reason in ("stop", "length") and second.message.content, second


def test_api_chat_takes_tools_whole_and_streamed(http: httpx.Client) -> None:
    body: Any = {
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 64,
        "temperature": 0,
    }
    answer = http.post("/api/chat", json=body).json()
    assert answer["finish_reason"] == "tool_calls", answer
    [call] = answer["message"]["tool_calls"]
    assert call["name"] == "get_weather" and call["id"].startswith("call_")
    jsonschema.validate(json.loads(call["arguments"]), WEATHER_PARAMETERS)
    events = []
    with http.stream("POST", "/api/chat/stream", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line.removeprefix("data: ")))
    pieces = [e for e in events if e["type"] == "tool_call"]
    assert pieces[0]["name"] == "get_weather" and pieces[0]["id"].startswith("call_")
    assert "".join(p["arguments"] for p in pieces) == call["arguments"]
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "tool_calls"
    replay = {
        "messages": [
            *ASK,
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"},
        ],
        "max_tokens": 16,
    }
    assert http.post("/api/chat", json=replay).status_code == 200


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice.function.name"),
        ({"tools": [*TOOLS, TOOLS[0]]}, "tools[2].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "x": 1}}}]},
            "tools[0].function.parameters.x",
        ),
        ({"messages": [{"role": "tool", "content": "18 degrees"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "hi", "tool_call_id": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_bad_tool_fields_are_refused_naming_the_field(http: httpx.Client, change: Any, param: str) -> None:
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "tool_choice": "required", "max_tokens": 8} | change
    response = http.post("/v1/chat/completions", json=body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert http.get("/health/live").status_code == 200  # the connection and the server go on


def test_required_without_tools_is_refused(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK, "tool_choice": "required"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "tool_choice", response.text
