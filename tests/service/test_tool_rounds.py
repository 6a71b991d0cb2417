"""Server-side tool rounds against a scripted engine that always calls (so every corner is reached on demand)
and a real HTTP tool server: the round limit, the tool_choice of each generation, a client tool ending the
rounds, each failure as a clear error with every slot and lease given back, the streamed path. The real model
runs the same paths end to end in tests/api/test_tool_rounds.py."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from llm_inference.engines.base import ChatMessage, Chunk, GenerationRequest
from llm_inference.errors import ToolDispatchFailed, ToolDispatchTimeout, UnsupportedParameter
from llm_inference.service import (
    ChatInput,
    Delta,
    Finished,
    InferenceService,
    SamplingInput,
    ToolCallDelta,
    complete_chat,
    open_chat_stream,
)
from llm_inference.service.tools import ToolsInput, ToolSpec
from tests.conftest import make_settings
from tests.fakes import OneModel, ScriptedEngine, idle
from tests.tool_server import ToolServer, tool_server

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
ANSWER = ("The weather ", "is fine.")


@dataclass
class CallingEngine(ScriptedEngine):
    """Calls `calls` whenever its output is constrained (a tool call may be made), else answers ANSWER; keeps
    each request's constraint kind (None: tool_choice none, a plain answer)."""

    calls: Sequence[str] = ("get_weather",)
    context_length: int = 1_000_000
    constrained: list[str | None] = field(default_factory=list)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        constraint = request.sampling.constraint
        self.constrained.append(None if constraint is None else constraint.param)
        if constraint is None:
            self.pieces = ANSWER
        else:
            text = json.dumps({"tool_calls": [{"name": n, "arguments": {"city": "Paris"}} for n in self.calls]})
            self.pieces = (text[:9], text[9:])
        async for chunk in super().generate(request):
            yield chunk


@pytest.fixture(scope="module")
def tools() -> Iterator[ToolServer]:
    with tool_server() as server:
        yield server


@pytest.fixture(autouse=True)
def forget_calls(tools: ToolServer) -> None:
    tools.calls.clear()


@pytest.fixture
async def make_service(tools: ToolServer) -> AsyncIterator[Any]:
    made: list[InferenceService] = []

    def make(engine: ScriptedEngine, **settings: str) -> InferenceService:
        env = {"LLM_TOOL_DISPATCH_URL": tools.url, "LLM_MAX_TOOL_ROUNDS": "3", **settings}
        service = InferenceService(settings=make_settings(**env), registry=OneModel(engine))  # type: ignore[arg-type]
        made.append(service)
        return service

    yield make
    for service in made:
        await service.aclose()


def chat(*names: str, server: Sequence[str] = ("get_weather",), mode: Any = "required") -> ChatInput:
    specs = tuple(
        ToolSpec(name, None, PARAMETERS, f"tools[{i}].function.parameters", server=name in server)
        for i, name in enumerate(names or ("get_weather",))
    )
    return ChatInput(SamplingInput(), [ChatMessage("user", "The weather in Paris?")], tools=ToolsInput(specs, mode))


async def test_rounds_run_up_to_the_limit_then_the_model_must_answer(make_service: Any, tools: ToolServer) -> None:
    engine = CallingEngine()
    service = make_service(engine)
    prepared, outcome = await complete_chat(service, chat())
    assert (outcome.text, outcome.finish_reason, outcome.tool_calls) == ("The weather is fine.", "stop", ())
    assert len(outcome.tool_rounds) == 3 == len(tools.calls)
    # required for the first answer, auto after it (else the model could only ever call), none after the last
    assert engine.constrained == ["tools", "tools", "tools", None]
    for round_, body in zip(outcome.tool_rounds, tools.bodies(), strict=True):
        [call], [result] = round_.calls, round_.results
        assert body == {"id": call.id, "name": "get_weather", "arguments": {"city": "Paris"}}
        assert result.tool_call_id == call.id and result.content.startswith("get_weather says: 18 degrees")
    assert prepared.messages is not None
    assert [m.role for m in prepared.messages] == ["user", *["assistant", "tool"] * 3]
    assert prepared.messages[2] == ChatMessage(
        "tool",
        outcome.tool_rounds[0].results[0].content,
        tool_call_id=outcome.tool_rounds[0].calls[0].id,
        name="get_weather",
    )
    assert idle(service)


async def test_each_call_of_a_round_is_run_and_answered_in_order(make_service: Any, tools: ToolServer) -> None:
    service = make_service(CallingEngine(calls=("get_weather", "plain")), LLM_MAX_TOOL_ROUNDS="1")
    _, outcome = await complete_chat(service, chat("get_weather", "plain", server=("get_weather", "plain")))
    [round_] = outcome.tool_rounds
    assert [c.name for c in round_.calls] == ["get_weather", "plain"]
    assert [r.tool_call_id for r in round_.results] == [c.id for c in round_.calls]
    assert round_.results[1].content == "plain text, not JSON: 21 °C"  # not JSON: the body's text
    assert sorted(b["name"] for b in tools.bodies()) == ["get_weather", "plain"]


async def test_a_call_to_a_client_tool_ends_the_rounds_unrun(make_service: Any, tools: ToolServer) -> None:
    service = make_service(CallingEngine(calls=("get_weather", "ask_user")))
    _, outcome = await complete_chat(service, chat("get_weather", "ask_user"))
    assert outcome.finish_reason == "tool_calls" and [c.name for c in outcome.tool_calls] == ["get_weather", "ask_user"]
    assert outcome.tool_rounds == () and tools.calls == []


@pytest.mark.parametrize(
    ("name", "settings", "error", "cause"),
    [
        ("fail", {}, ToolDispatchFailed, "answered HTTP 500"),
        ("huge", {"LLM_TOOL_RESULT_MAX_BYTES": "1024"}, ToolDispatchFailed, "LLM_TOOL_RESULT_MAX_BYTES=1024"),
        ("slow", {"LLM_TOOL_DISPATCH_TIMEOUT_SECONDS": "0.5"}, ToolDispatchTimeout, "TIMEOUT_SECONDS=0.5"),
        ("get_weather", {"LLM_TOOL_DISPATCH_URL": "http://127.0.0.1:9/call"}, ToolDispatchFailed, "not be reached"),
    ],
)
async def test_a_failing_tool_is_a_clear_error_and_frees_everything(
    make_service: Any, name: str, settings: dict[str, str], error: type[Exception], cause: str
) -> None:
    service = make_service(CallingEngine(calls=(name,)), **settings)
    with pytest.raises(error) as caught:
        await complete_chat(service, chat(name, server=(name,)))
    assert type(caught.value) is error and f"tool {name!r}" in str(caught.value) and cause in str(caught.value)
    assert idle(service)
    with pytest.raises(error):  # streamed: before the stream starts, so it is an HTTP error status
        await open_chat_stream(service, chat(name, server=(name,)))
    assert idle(service)


async def test_a_stream_runs_its_rounds_then_streams_the_answer(make_service: Any, tools: ToolServer) -> None:
    service = make_service(CallingEngine(), LLM_MAX_TOOL_ROUNDS="2")
    stream = await open_chat_stream(service, chat())
    try:
        items = [item async for item in stream]
    finally:
        await stream.aclose()
    assert [i.text for i in items if isinstance(i, Delta)] == list(ANSWER)
    finished = items[-1]
    assert isinstance(finished, Finished) and finished.finish_reason == "stop"
    assert len(finished.tool_rounds) == 2 == len(tools.calls)
    assert idle(service)


async def test_a_streamed_call_to_a_client_tool_passes_through(make_service: Any, tools: ToolServer) -> None:
    service = make_service(CallingEngine(calls=("get_weather", "ask_user")))
    stream = await open_chat_stream(service, chat("get_weather", "ask_user"))
    try:
        items = [item async for item in stream]
    finally:
        await stream.aclose()
    assert [i.name for i in items if isinstance(i, ToolCallDelta) and i.name] == ["get_weather", "ask_user"]
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "tool_calls" and not items[-1].tool_rounds
    assert tools.calls == [] and idle(service)


async def test_server_tools_without_a_dispatch_url_are_refused(make_service: Any) -> None:
    service = make_service(CallingEngine(), LLM_TOOL_DISPATCH_URL="")
    assert service.tool_dispatcher is None
    with pytest.raises(UnsupportedParameter) as caught:
        await complete_chat(service, chat("ask_user", "get_weather"))
    assert caught.value.param == "tools[1].server" and "LLM_TOOL_DISPATCH_URL" in caught.value.message
    assert idle(service)
