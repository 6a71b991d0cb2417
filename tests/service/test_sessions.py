"""The session store on its own, with a clock the test moves: LRU eviction, expiry, one turn at a time."""

from __future__ import annotations

import pytest

from llm_inference.engines.base import ChatMessage
from llm_inference.errors import Overloaded, SessionBusy, SessionNotFound
from llm_inference.service.sessions import LocalSessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(max_sessions: int = 3, ttl_seconds: float = 60) -> tuple[LocalSessions, Clock]:
    clock = Clock()
    return LocalSessions(max_sessions, ttl_seconds, clock=clock, wall_clock=clock), clock


async def test_create_get_delete() -> None:
    sessions, _ = store()
    session = await sessions.create("m", "Be brief.")
    assert len(session.id) == 32 and await sessions.get(session.id) is session
    assert session.messages == [ChatMessage("system", "Be brief.")]
    assert (await sessions.create("m")).messages == []  # no system message unless one is given
    await sessions.delete(session.id)
    with pytest.raises(SessionNotFound) as deleted:
        await sessions.get(session.id)
    assert deleted.value.param == "session_id" and deleted.value.status_code == 404
    with pytest.raises(SessionNotFound):
        await sessions.delete(session.id)


async def test_ids_are_unguessable_and_distinct() -> None:
    sessions, _ = store(max_sessions=100)
    ids = {(await sessions.create("m")).id for _ in range(100)}
    assert len(ids) == 100


async def test_the_least_recently_used_session_is_evicted_past_the_limit() -> None:
    sessions, clock = store(max_sessions=2)
    first = await sessions.create("m")
    clock.now += 1
    second = await sessions.create("m")
    clock.now += 1
    await sessions.end_turn(await sessions.begin_turn(first.id))  # a turn makes `first` the most recently used
    third = await sessions.create("m")
    assert len(sessions) == 2
    with pytest.raises(SessionNotFound):
        await sessions.get(second.id)
    assert await sessions.get(first.id) and await sessions.get(third.id)


async def test_reading_a_session_does_not_count_as_use() -> None:
    sessions, clock = store(max_sessions=2, ttl_seconds=10)
    first = await sessions.create("m")
    second = await sessions.create("m")
    clock.now += 9
    await sessions.get(first.id)
    await sessions.create("m")  # evicts `first`: a GET did not move it
    with pytest.raises(SessionNotFound):
        await sessions.get(first.id)
    clock.now += 1
    with pytest.raises(SessionNotFound):  # and a GET did not keep `second` alive either
        await sessions.get(second.id)


async def test_an_idle_session_expires_after_the_ttl_counted_from_its_last_turn() -> None:
    sessions, clock = store(ttl_seconds=60)
    session = await sessions.create("m")
    clock.now += 50
    await sessions.end_turn(await sessions.begin_turn(session.id))
    clock.now += 59
    assert await sessions.get(session.id) is session
    clock.now += 1
    with pytest.raises(SessionNotFound):
        await sessions.get(session.id)
    assert len(sessions) == 0


async def test_expired_sessions_are_dropped_when_another_is_created() -> None:
    sessions, clock = store(max_sessions=10, ttl_seconds=60)
    for _ in range(5):
        await sessions.create("m")
    clock.now += 30
    fresh = await sessions.create("m")
    clock.now += 30
    await sessions.create("m")
    assert len(sessions) == 2 and await sessions.get(fresh.id)


async def test_one_turn_at_a_time() -> None:
    sessions, _ = store()
    session = await sessions.create("m")
    assert (await sessions.begin_turn(session.id)).busy
    with pytest.raises(SessionBusy) as busy:
        await sessions.begin_turn(session.id)
    assert busy.value.status_code == 409 and busy.value.param == "session_id"
    await sessions.end_turn(session)
    assert not session.busy
    await sessions.end_turn(await sessions.begin_turn(session.id))


async def test_a_running_turn_keeps_its_session_from_expiry_and_eviction() -> None:
    sessions, clock = store(max_sessions=2, ttl_seconds=60)
    running = await sessions.begin_turn((await sessions.create("m")).id)
    idle = await sessions.create("m")
    clock.now += 120  # both past the TTL; only the idle one expires
    with pytest.raises(SessionNotFound):
        await sessions.get(idle.id)
    assert await sessions.get(running.id) is running
    await sessions.create("m")
    clock.now += 1
    newest = await sessions.create("m")  # full: the idle one goes, not the running one though it is older
    assert await sessions.get(running.id) and await sessions.get(newest.id) and len(sessions) == 2
    await sessions.end_turn(running)
    clock.now += 59
    assert await sessions.get(running.id)  # its TTL started when the turn ended


async def test_no_room_when_every_session_is_answering() -> None:
    sessions, _ = store(max_sessions=2)
    for _ in range(2):
        await sessions.begin_turn((await sessions.create("m")).id)
    with pytest.raises(Overloaded) as full:
        await sessions.create("m")
    assert "LLM_MAX_SESSIONS=2" in full.value.message and full.value.status_code == 429


async def test_record_keeps_what_the_model_saw_and_its_answer() -> None:
    sessions, _ = store()
    session = await sessions.begin_turn((await sessions.create("m", "Be brief.")).id)
    kept = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]
    await sessions.record(session, kept, ChatMessage("assistant", "Hello!"), tokens=12, truncated_messages=2)
    await sessions.record(session, kept, ChatMessage("assistant", "Hello again!"), tokens=14, truncated_messages=1)
    assert session.messages == [*kept, ChatMessage("assistant", "Hello again!")]
    assert session.tokens == 14 and session.truncated_messages == 3


async def test_a_deleted_sessions_turn_ends_without_bringing_it_back() -> None:
    sessions, _ = store()
    session = await sessions.begin_turn((await sessions.create("m")).id)
    await sessions.delete(session.id)
    await sessions.record(
        session, [ChatMessage("user", "Hi")], ChatMessage("assistant", "Hello"), tokens=3, truncated_messages=0
    )
    await sessions.end_turn(session)
    with pytest.raises(SessionNotFound):
        await sessions.get(session.id)
