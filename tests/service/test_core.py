"""Fast unit tests of the service core's edge cases against a scripted engine: admission, timeouts,
cancellation and the stream's ownership of its slot. The real-model tests (tests/api/) cover the same paths
end to end; these pin down the corners a real model cannot reach on demand."""

from __future__ import annotations

import pytest

from llm_inference.errors import ContextOverflow, EngineFailure, InvalidParameter, Overloaded, RequestTimeout
from llm_inference.service import (
    Delta,
    Failed,
    Finished,
    SamplingInput,
    complete,
    open_stream,
    prepare,
)
from tests.fakes import ScriptedEngine, idle, service_with


async def test_complete_joins_the_text_and_frees_its_slot() -> None:
    engine = ScriptedEngine()
    service = service_with(engine)
    prepared = await prepare(service, SamplingInput(), prompt="a b c")
    outcome = await complete(service, prepared)
    assert (outcome.text, outcome.finish_reason) == ("Hello!", "stop")
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens, outcome.usage.total_tokens) == (3, 3, 6)
    assert idle(service) and engine.closed == engine.started


async def test_admission_refuses_past_capacity_and_a_stream_holds_its_slot_until_closed() -> None:
    service = service_with(ScriptedEngine(step_seconds=0.01))
    streams = [await open_stream(service, await prepare(service, SamplingInput(), prompt="x")) for _ in range(2)]
    assert service.admission.in_flight == 2
    with pytest.raises(Overloaded):
        await open_stream(service, await prepare(service, SamplingInput(), prompt="x"))
    assert service.registry.entry.in_flight == 2  # type: ignore[attr-defined]  # the refused one's lease is back
    await streams[0].aclose()  # closed unread: the slot comes back at once
    assert service.admission.in_flight == 1 and service.registry.entry.in_flight == 1  # type: ignore[attr-defined]
    items = [item async for item in streams[1]]
    assert idle(service)
    assert [type(i) for i in items] == [Delta, Delta, Delta, Finished]
    await streams[1].aclose()  # idempotent: no slot is given back twice
    assert idle(service)


async def test_closing_a_stream_mid_generation_closes_the_engine_request() -> None:
    engine = ScriptedEngine(pieces=["a"] * 100, step_seconds=0.001)
    service = service_with(engine)
    stream = await open_stream(service, await prepare(service, SamplingInput(), prompt="x"))
    iterator = aiter(stream)
    assert isinstance(await anext(iterator), Delta)
    await stream.aclose()
    assert engine.closed == engine.started and idle(service)


async def test_a_complete_past_the_timeout_raises_and_closes_the_engine_request() -> None:
    engine = ScriptedEngine(pieces=["a"] * 100, step_seconds=0.05)
    service = service_with(engine, LLM_REQUEST_TIMEOUT_SECONDS="0.2")
    with pytest.raises(RequestTimeout):
        await complete(service, await prepare(service, SamplingInput(), prompt="x"))
    assert engine.closed == engine.started and idle(service)


async def test_a_stream_past_the_timeout_ends_with_a_timeout_item() -> None:
    engine = ScriptedEngine(pieces=["a"] * 100, step_seconds=0.05)
    service = service_with(engine, LLM_REQUEST_TIMEOUT_SECONDS="0.2")
    stream = await open_stream(service, await prepare(service, SamplingInput(), prompt="x"))
    items = [item async for item in stream]
    assert isinstance(items[-1], Failed) and items[-1].type == "timeout"
    assert all(isinstance(item, Delta) for item in items[:-1])
    assert engine.closed == engine.started and idle(service)


async def test_an_engine_failure_before_the_first_token_is_raised_and_after_it_is_an_item() -> None:
    service = service_with(ScriptedEngine(fail_after=0))
    with pytest.raises(EngineFailure):
        await open_stream(service, await prepare(service, SamplingInput(), prompt="x"))
    assert idle(service)
    service = service_with(ScriptedEngine(fail_after=2))
    items = [item async for item in await open_stream(service, await prepare(service, SamplingInput(), prompt="x"))]
    assert [type(i) for i in items] == [Delta, Delta, Failed] and items[-1].type == "engine_error"
    assert idle(service)


async def test_prepare_applies_limits_in_our_words() -> None:
    service = service_with(ScriptedEngine(context_length=4), LLM_MAX_TOKENS_LIMIT="100")
    with pytest.raises(InvalidParameter, match="max_completion_tokens 101 exceeds LLM_MAX_TOKENS_LIMIT=100"):
        await prepare(service, SamplingInput(max_tokens=101, max_tokens_param="max_completion_tokens"), prompt="x")
    with pytest.raises(InvalidParameter, match="must not contain NUL"):
        await prepare(service, SamplingInput(), prompt="a\x00b")
    with pytest.raises(ContextOverflow):
        await prepare(service, SamplingInput(), prompt="one two three four five")
    assert idle(service)  # a request refused in prepare gave its model lease back
    prepared = await prepare(service, SamplingInput(stop="END", temperature=0), prompt="x")
    assert prepared.request.sampling.stop == ("END",) and prepared.request.sampling.temperature == 0
    assert service.registry.entry.in_flight == 1  # type: ignore[attr-defined]  # held until it runs or is dropped
