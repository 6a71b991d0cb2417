"""Sessions in the shared store (LLM_STATE_URL), so that any replica continues any session.

A session is a hash (model, conversation, times, token counts) that expires LLM_SESSION_TTL_SECONDS after its
last turn; an index (a sorted set by last use) bounds them to LLM_MAX_SESSIONS, evicting the least recently used
idle one. A running turn holds a lease: a key with a random value and a short expiry, renewed while the turn
runs, so a replica that dies mid-turn frees its session within LEASE_SECONDS. Each step is one Lua script, run
atomically by the server: two replicas cannot both start a turn of one session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import msgspec

from llm_inference.engines.base import ChatMessage
from llm_inference.errors import Overloaded, SessionBusy, SessionNotFound, StateUnavailable
from llm_inference.service.sessions import Session, new_session_id
from llm_inference.state.store import StateStore, StoreUnavailable

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0  # a dead replica's turn holds its session this long at most
EVICTION_SCAN = 100  # the least recently used sessions looked at for one to evict

# The server's clock: `now` in ms for the session's times, `order` in µs for the index (uses in one ms differ).
_NOW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local order = tonumber(time[1]) * 1000000 + tonumber(time[2])
"""

# KEYS: the index. ARGV: the session keys' prefix, the id, the TTL (ms), LLM_MAX_SESSIONS, model, messages.
# Returns the creation time (ms), or 0 when every session it could evict is answering a turn.
CREATE = (
    _NOW
    + """
local index, prefix, id = KEYS[1], ARGV[1], ARGV[2]
local ttl, max = tonumber(ARGV[3]), tonumber(ARGV[4])
while redis.call('ZCARD', index) >= max do
  local oldest = redis.call('ZRANGE', index, 0, tonumber(ARGV[7]) - 1)
  local freed = 0
  for _, old in ipairs(oldest) do
    if redis.call('EXISTS', prefix .. old) == 0 then
      redis.call('ZREM', index, old)
      freed = freed + 1
    end
  end
  if freed == 0 then
    for _, old in ipairs(oldest) do
      if redis.call('EXISTS', prefix .. old .. ':lease') == 0 then
        redis.call('DEL', prefix .. old)
        redis.call('ZREM', index, old)
        freed = 1
        break
      end
    end
    if freed == 0 then return 0 end
  end
end
local key = prefix .. id
redis.call('HSET', key, 'model', ARGV[5], 'messages', ARGV[6], 'created_at', now, 'last_used_at', now,
  'tokens', 0, 'truncated_messages', 0)
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', index, order, id)
return now
"""
)

# KEYS: session, lease, index. ARGV: lease value, lease (ms), TTL (ms), id.
# Returns {0} no such session, {1} busy, or {2, the session's fields}.
BEGIN_TURN = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
redis.call('HSET', KEYS[1], 'last_used_at', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[3], order, ARGV[4])
return {2, redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: session, lease. ARGV: lease value, lease (ms), TTL (ms). Returns 1 if the lease was still ours.
RENEW = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[2]))
return 1
"""

# KEYS: session, lease. ARGV: lease value, messages, tokens, messages truncated this turn.
# Returns {0} deleted meanwhile, {-1} the lease was lost, or {1, truncated messages in all}.
RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1} end
redis.call('HSET', KEYS[1], 'messages', ARGV[2], 'tokens', ARGV[3])
return {1, redis.call('HINCRBY', KEYS[1], 'truncated_messages', ARGV[4])}
"""

# KEYS: session, lease, index. ARGV: lease value, TTL (ms), id. Returns the time (ms) the turn ended, or 0 if
# the lease was no longer ours (expired, or the session deleted).
END_TURN = (
    _NOW
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_used_at', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[3], order, ARGV[3])
end
return now
"""
)

_MESSAGES = msgspec.json.Decoder(list[ChatMessage])


def _session(session_id: str, fields: dict[str, str], busy: bool, lease: str | None = None) -> Session:
    return Session(
        id=session_id,
        model=fields["model"],
        created_at=int(fields["created_at"]) / 1000,
        messages=_MESSAGES.decode(fields["messages"]),
        last_used_at=int(fields["last_used_at"]) / 1000,
        tokens=int(fields["tokens"]),
        truncated_messages=int(fields["truncated_messages"]),
        busy=busy,
        lease=lease,
    )


def _unavailable(exc: StoreUnavailable) -> StateUnavailable:
    return StateUnavailable(
        f"sessions are unavailable: {exc}; retry in {exc.retry_after_seconds}s",
        retry_after_seconds=exc.retry_after_seconds,
    )


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class SharedSessions:
    """The Sessions protocol over the shared store. A Session it returns is a copy: record() and end_turn()
    update the copy they are given as well as the store."""

    def __init__(
        self, store: StateStore, max_sessions: int, ttl_seconds: float, lease_seconds: float = LEASE_SECONDS
    ) -> None:
        self.store, self.max_sessions, self.ttl_seconds = store, max_sessions, ttl_seconds
        self.lease_seconds = lease_seconds
        client = store.client
        self._create = client.register_script(CREATE)
        self._begin = client.register_script(BEGIN_TURN)
        self._renew = client.register_script(RENEW)
        self._record = client.register_script(RECORD)
        self._end = client.register_script(END_TURN)
        self._held: dict[str, str] = {}  # session id -> lease value, for the turns this process runs
        self._renewing: asyncio.Task[None] | None = None

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl_seconds * 1000))

    @property
    def _lease_ms(self) -> int:
        return max(1, round(self.lease_seconds * 1000))

    def _keys(self, session_id: str) -> list[str]:
        key = self.store.key("session", session_id)
        return [key, key + ":lease", self.store.key("sessions")]

    async def _call(self, operation: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.store.call(operation, lambda client: script(keys=keys, args=args, client=client))
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc

    async def create(self, model: str, system: str | None = None) -> Session:
        session_id = new_session_id()
        messages = [ChatMessage("system", system)] if system else []
        args = [
            self.store.key("session", ""),
            session_id,
            self._ttl_ms,
            self.max_sessions,
            model,
            msgspec.json.encode(messages),
            EVICTION_SCAN,
        ]
        created = await self._call("session_create", self._create, [self.store.key("sessions")], args)
        if not created:
            raise Overloaded(
                f"all LLM_MAX_SESSIONS={self.max_sessions} sessions are answering a turn; retry when one ends"
            )
        now = int(created) / 1000
        return Session(id=session_id, model=model, created_at=now, messages=messages, last_used_at=now)

    async def get(self, session_id: str) -> Session:
        key, lease, _ = self._keys(session_id)

        async def read(client: Any) -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hgetall(key)
                pipe.exists(lease)
                return await pipe.execute()  # type: ignore[no-any-return]

        try:
            fields, busy = await self.store.call("session_get", read)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc
        if not fields:
            raise SessionNotFound(session_id)
        return _session(session_id, fields, bool(busy))

    async def delete(self, session_id: str) -> None:
        key, lease, index = self._keys(session_id)

        async def remove(client: Any) -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.delete(lease)
                pipe.zrem(index, session_id)
                return await pipe.execute()  # type: ignore[no-any-return]

        try:
            deleted, _, _ = await self.store.call("session_delete", remove)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc
        if not deleted:
            raise SessionNotFound(session_id)

    async def begin_turn(self, session_id: str) -> Session:
        lease = secrets.token_hex(16)
        args = [lease, self._lease_ms, self._ttl_ms, session_id]
        answer = await self._call("session_begin_turn", self._begin, self._keys(session_id), args)
        if answer[0] == 0:
            raise SessionNotFound(session_id)
        if answer[0] == 1:
            raise SessionBusy(session_id)
        self._held[session_id] = lease
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew_leases(), name="session-lease-renewal")
        return _session(session_id, _pairs(answer[1]), busy=True, lease=lease)

    async def record(
        self, session: Session, kept: Sequence[ChatMessage], answer: ChatMessage, tokens: int, truncated_messages: int
    ) -> None:
        assert session.lease is not None, "a turn's session (begin_turn)"
        messages = [*kept, answer]
        args = [session.lease, msgspec.json.encode(messages), tokens, truncated_messages]
        result = await self._call("session_record", self._record, self._keys(session.id)[:2], args)
        if result[0] == -1:
            log.warning("a turn's answer was not recorded: its session's lease expired", extra={"session": session.id})
        if result[0] == 1:
            session.messages, session.tokens, session.truncated_messages = messages, tokens, int(result[1])

    async def end_turn(self, session: Session) -> None:
        if session.lease is None or self._held.get(session.id) != session.lease:
            return  # ended before (end_turn must follow begin_turn; it may be called twice)
        del self._held[session.id]
        session.busy = False
        args = [session.lease, self._ttl_ms, session.id]
        try:
            ended = await self._call("session_end_turn", self._end, self._keys(session.id), args)
        except StateUnavailable:
            log.warning(
                "a turn ended while the shared store did not answer; its session stays busy until its lease expires",
                extra={"session": session.id, "lease_seconds": self.lease_seconds},
            )
            return
        if ended:
            session.last_used_at = int(ended) / 1000

    async def _renew_leases(self) -> None:
        """While this process runs turns: renew their leases every third of the lease's life."""
        while self._held:
            await asyncio.sleep(self.lease_seconds / 3)
            for session_id, lease in list(self._held.items()):
                key, lease_key, _ = self._keys(session_id)
                try:
                    kept = await self._call(
                        "session_renew", self._renew, [key, lease_key], [lease, self._lease_ms, self._ttl_ms]
                    )
                except StateUnavailable:
                    break  # the next round tries again; the store is in its backoff meanwhile
                if not kept and self._held.get(session_id) == lease:
                    log.warning("a running turn lost its session's lease", extra={"session": session_id})

    async def aclose(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
