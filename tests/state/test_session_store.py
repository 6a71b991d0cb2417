"""Sessions in a real Valkey/Redis server, seen from two replicas (two clients): one turn at a time across both,
a lease that frees the session of a replica that died mid-turn, eviction, expiry, and 503 without the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm_inference.engines.base import ChatMessage, ToolCall
from llm_inference.errors import Overloaded, SessionBusy, SessionNotFound, StateUnavailable
from llm_inference.service import ChatInput, Delta, Failed, Finished, InferenceService, SamplingInput, open_chat_stream
from llm_inference.state.session_store import SharedSessions
from llm_inference.state.store import StateStore
from tests.conftest import make_settings
from tests.fakes import OneModel, ScriptedEngine
from tests.polling import wait_until_async
from tests.state.conftest import make_store
from tests.state_server import StateServer

HI, HELLO = ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!")


@pytest.fixture
async def replicas(store: StateStore) -> AsyncIterator[tuple[StateStore, StateStore]]:
    other = StateStore(store.config)  # the same keys through other connections: another replica
    yield store, other
    await other.aclose()


def sessions(store: StateStore, max_sessions: int = 10, ttl_seconds: float = 60, **kw: float) -> SharedSessions:
    return SharedSessions(store, max_sessions, ttl_seconds, **kw)


async def test_a_session_started_on_one_replica_continues_on_the_other(replicas) -> None:  # type: ignore[no-untyped-def]
    a, b = sessions(replicas[0]), sessions(replicas[1])
    created = await a.create("m", "Be brief.")
    assert len(created.id) == 32 and created.messages == [ChatMessage("system", "Be brief.")]
    turn = await b.begin_turn(created.id)
    assert turn.busy and (await a.get(created.id)).busy
    call = ChatMessage("assistant", "", (ToolCall("call-1", "weather", '{"city": "Paris"}'),))
    kept = [*turn.messages, HI, call, ChatMessage("tool", "sunny", tool_call_id="call-1", name="weather")]
    await b.record(turn, kept, HELLO, tokens=42, truncated_messages=1)
    await b.end_turn(turn)
    seen = await a.get(created.id)
    assert seen.messages == [*kept, HELLO], "every field of every message survives the store"
    assert (seen.tokens, seen.truncated_messages, seen.busy, seen.model) == (42, 1, False, "m")
    assert seen.created_at == created.created_at and seen.last_used_at >= created.created_at
    await a.delete(created.id)
    with pytest.raises(SessionNotFound):
        await b.get(created.id)
    with pytest.raises(SessionNotFound):
        await b.delete(created.id)


async def test_one_turn_at_a_time_across_replicas(replicas) -> None:  # type: ignore[no-untyped-def]
    a, b = sessions(replicas[0]), sessions(replicas[1])
    session = await a.create("m")
    results = await asyncio.gather(
        *(side.begin_turn(session.id) for side in (a, b, a, b, a, b)), return_exceptions=True
    )
    begun = [r for r in results if not isinstance(r, BaseException)]
    assert len(begun) == 1 and all(isinstance(r, SessionBusy) for r in results if r not in begun)
    owner = a if results.index(begun[0]) % 2 == 0 else b
    await owner.end_turn(begun[0])
    await owner.end_turn(begun[0])  # twice is harmless
    assert not (await b.get(session.id)).busy
    await b.end_turn(await b.begin_turn(session.id))
    await a.aclose()
    await b.aclose()


async def test_a_dead_replicas_turn_frees_the_session_when_its_lease_expires(replicas) -> None:  # type: ignore[no-untyped-def]
    dying, alive = sessions(replicas[0], lease_seconds=0.3), sessions(replicas[1])
    session = await alive.create("m")
    stale = await dying.begin_turn(session.id)
    await dying.aclose()  # the replica dies: nothing renews its lease from now on
    with pytest.raises(SessionBusy):
        await alive.begin_turn(session.id)

    async def begin() -> object:
        return await alive.begin_turn(session.id)

    turn = await wait_until_async(begin, timeout=30, what="the lease to expire", interval=0.1)
    await dying.record(stale, [HI], HELLO, tokens=3, truncated_messages=0)  # late: the lease is not its own
    assert (await alive.get(session.id)).messages == [], "a turn that lost its lease records nothing"
    await alive.end_turn(turn)  # type: ignore[arg-type]
    await alive.aclose()


async def test_a_running_turn_renews_its_lease(replicas) -> None:  # type: ignore[no-untyped-def]
    a, b = sessions(replicas[0], lease_seconds=0.3), sessions(replicas[1])
    session = await a.create("m")
    turn = await a.begin_turn(session.id)
    await asyncio.sleep(1)  # three leases long: renewed every 0.1 s meanwhile
    with pytest.raises(SessionBusy):
        await b.begin_turn(session.id)
    await a.record(turn, [HI], HELLO, tokens=3, truncated_messages=0)
    await a.end_turn(turn)
    assert (await b.get(session.id)).messages == [HI, HELLO]
    await a.aclose()


async def test_the_least_recently_used_idle_session_is_evicted_past_the_limit(replicas) -> None:  # type: ignore[no-untyped-def]
    a, b = sessions(replicas[0], max_sessions=2), sessions(replicas[1], max_sessions=2)
    first = await a.create("m")
    second = await b.create("m")
    await b.end_turn(await b.begin_turn(first.id))  # a turn makes `first` the most recently used
    third = await a.create("m")
    with pytest.raises(SessionNotFound):
        await a.get(second.id)
    assert await b.get(first.id) and await b.get(third.id)
    # A running turn is never evicted: with both sessions busy there is no room.
    turns = [await a.begin_turn(first.id), await b.begin_turn(third.id)]
    with pytest.raises(Overloaded) as full:
        await a.create("m")
    assert "LLM_MAX_SESSIONS=2" in full.value.message
    await a.end_turn(turns[0])
    await b.end_turn(turns[1])
    await a.aclose()
    await b.aclose()


async def test_an_idle_session_expires_and_a_running_one_does_not(store: StateStore) -> None:
    short = sessions(store, ttl_seconds=0.5)
    idle, running = await short.create("m"), await short.create("m")
    turn = await short.begin_turn(running.id)

    async def gone() -> bool:
        try:
            await short.get(idle.id)
        except SessionNotFound:
            return True
        return False

    await wait_until_async(gone, timeout=30, what="the idle session to expire")
    assert (await short.get(running.id)).busy, "a running turn keeps its session past the TTL"
    await short.end_turn(turn)
    await short.aclose()


async def test_without_the_store_sessions_answer_503_and_a_turn_still_ends(tmp_path: Path) -> None:
    server = StateServer(tmp_path).start()
    store = make_store(server.url, LLM_STATE_TIMEOUT_SECONDS="0.2")
    shared = sessions(store)
    try:
        session = await shared.create("m")
        turn = await shared.begin_turn(session.id)
        server.stop()
        async with asyncio.timeout(10):
            for attempt in (shared.get(session.id), shared.create("m"), shared.delete(session.id)):
                with pytest.raises(StateUnavailable) as caught:
                    await attempt
                assert caught.value.status_code == 503 and caught.value.retry_after_seconds >= 1
            with pytest.raises(StateUnavailable):
                await shared.record(turn, [HI], HELLO, tokens=3, truncated_messages=0)
            await shared.end_turn(turn)  # never raises: the lease expires on its own
        assert not turn.busy
    finally:
        await shared.aclose()
        await store.aclose()
        server.stop()


async def test_a_streamed_turn_the_store_cannot_record_ends_with_a_failure_not_an_answer(tmp_path: Path) -> None:
    server = StateServer(tmp_path).start()
    store = make_store(server.url, LLM_STATE_TIMEOUT_SECONDS="0.2")
    shared = sessions(store)
    service = InferenceService(
        settings=make_settings(), registry=OneModel(ScriptedEngine(step_seconds=0.05)), session_store=shared
    )  # type: ignore[arg-type]
    try:
        session = await shared.create("scripted")
        stream = await open_chat_stream(service, ChatInput(SamplingInput(), [HI], session_id=session.id))
        assert isinstance(await anext(aiter(stream)), Delta)
        server.stop()
        async with asyncio.timeout(10):
            items = [item async for item in stream]
            await stream.aclose()
        assert isinstance(items[-1], Failed) and items[-1].type == "state_unavailable"
        assert not any(isinstance(item, Finished) for item in items), "no `done`: the turn was not recorded"
        assert service.admission.in_flight == 0
    finally:
        await shared.aclose()
        await store.aclose()
        server.stop()
