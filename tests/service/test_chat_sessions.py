"""A session's turn against the scripted engine: the corners a real model cannot reach on demand (an engine
failure mid-stream, a timeout). What is recorded: a complete answer, and nothing else."""

from __future__ import annotations

import pytest

from llm_inference.engines.base import ChatMessage
from llm_inference.errors import EngineFailure, InvalidParameter, RequestTimeout
from llm_inference.service import ChatInput, Delta, Failed, Finished, SamplingInput, complete_chat, open_chat_stream
from tests.fakes import ScriptedEngine, service_with

HI = [ChatMessage("user", "hi")]


def turn(session_id: str, messages: list[ChatMessage] = HI) -> ChatInput:
    return ChatInput(SamplingInput(), messages, session_id=session_id)


async def test_a_streamed_turn_is_recorded_when_it_finishes() -> None:
    service = service_with(ScriptedEngine())
    session = await service.sessions.create("scripted", "be brief")
    stream = await open_chat_stream(service, turn(session.id))
    items = [item async for item in stream]
    await stream.aclose()
    assert isinstance(items[-1], Finished)
    assert session.messages == [ChatMessage("system", "be brief"), *HI, ChatMessage("assistant", "Hello!")]
    assert session.tokens == items[-1].usage.total_tokens and not session.busy


async def test_the_session_is_free_for_the_next_turn_as_soon_as_the_end_of_a_stream_is_read() -> None:
    # A client that reads `done` and sends its next turn at once must not get 409 session_busy because the
    # server has not yet closed the finished stream (this raced in CI).
    service = service_with(ScriptedEngine())
    session = await service.sessions.create("scripted")
    stream = await open_chat_stream(service, turn(session.id))
    items = [item async for item in stream]  # the stream is read to its end but not closed yet
    assert isinstance(items[-1], Finished) and not session.busy
    assert service.admission.in_flight == 0  # nor is the admission slot still held
    follow_up = await open_chat_stream(service, turn(session.id, [ChatMessage("user", "again")]))
    assert session.busy
    await stream.aclose()  # closing the first turn's stream late must not end the second turn
    assert session.busy
    [item async for item in follow_up]
    await follow_up.aclose()
    assert not session.busy and [m.content for m in session.messages] == ["hi", "Hello!", "again", "Hello!"]


async def test_an_engine_failure_mid_stream_records_nothing_and_frees_the_session() -> None:
    service = service_with(ScriptedEngine(fail_after=1))
    session = await service.sessions.create("scripted")
    stream = await open_chat_stream(service, turn(session.id))
    assert session.busy
    items = [item async for item in stream]
    await stream.aclose()
    assert isinstance(items[0], Delta) and isinstance(items[-1], Failed)
    assert session.messages == [] and not session.busy and service.admission.in_flight == 0


async def test_a_stream_closed_before_its_end_records_nothing() -> None:
    service = service_with(ScriptedEngine(step_seconds=0.01))
    session = await service.sessions.create("scripted")
    stream = await open_chat_stream(service, turn(session.id))
    assert isinstance(await anext(aiter(stream)), Delta)
    await stream.aclose()
    assert session.messages == [] and not session.busy


async def test_a_failed_or_timed_out_whole_turn_records_nothing() -> None:
    service = service_with(ScriptedEngine(fail_after=2))
    session = await service.sessions.create("scripted")
    with pytest.raises(EngineFailure):
        await complete_chat(service, turn(session.id))
    assert session.messages == [] and not session.busy
    slow = service_with(ScriptedEngine(step_seconds=1), LLM_REQUEST_TIMEOUT_SECONDS="0.05")
    session = await slow.sessions.create("scripted")
    with pytest.raises(RequestTimeout):
        await complete_chat(slow, turn(session.id))
    assert session.messages == [] and not session.busy


async def test_the_new_messages_are_named_by_their_index_in_the_request() -> None:
    service = service_with(ScriptedEngine())
    session = await service.sessions.create("scripted", "be brief")
    await complete_chat(service, turn(session.id))
    with pytest.raises(InvalidParameter) as nul:
        await complete_chat(service, turn(session.id, [ChatMessage("user", "a\x00b")]))
    assert nul.value.param == "messages[0].content" and not session.busy
    assert len(session.messages) == 3
