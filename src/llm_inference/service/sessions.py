"""Server-side conversations behind one small protocol (Sessions): at most LLM_MAX_SESSIONS (the least recently
used evicted), idle ones expired after LLM_SESSION_TTL_SECONDS, each answering one turn at a time.

LocalSessions keeps them in this process: another replica does not know them (docs/api.md "Sessions");
state/session_store.py keeps them in the shared store (LLM_STATE_URL), where every replica finds them.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llm_inference.engines.base import ChatMessage
from llm_inference.errors import Overloaded, SessionBusy, SessionNotFound


@dataclass(eq=False)
class Session:
    id: str
    model: str
    created_at: float  # Unix time
    messages: list[ChatMessage] = field(default_factory=list)
    last_used_at: float = 0.0  # Unix time of creation or of the last turn's end
    tokens: int = 0  # prompt + answer tokens of the last turn: how much of the context the conversation fills
    truncated_messages: int = 0  # messages dropped over the session's life to fit the context
    busy: bool = False  # a turn is running
    last_used: float = 0.0  # the store's clock, for expiry
    lease: str | None = None  # the shared store's: the turn's hold on the session, None outside a turn


def new_session_id() -> str:
    return secrets.token_hex(16)  # 128 random bits: the id is all a client needs to read the conversation


class Sessions(Protocol):
    """Where sessions live. begin_turn() marks a session busy (SessionBusy if it is); end_turn() must follow,
    and never raises; record() keeps a finished turn."""

    max_sessions: int
    ttl_seconds: float

    async def create(self, model: str, system: str | None = None) -> Session: ...

    async def get(self, session_id: str) -> Session:
        """The session, without counting as a use (reading a conversation does not keep it alive)."""
        ...

    async def delete(self, session_id: str) -> None:
        """Forget a session. A turn it is running still answers its client, and is recorded nowhere."""
        ...

    async def begin_turn(self, session_id: str) -> Session: ...

    async def end_turn(self, session: Session) -> None: ...

    async def record(
        self, session: Session, kept: Sequence[ChatMessage], answer: ChatMessage, tokens: int, truncated_messages: int
    ) -> None:
        """A finished turn: the conversation as the model saw it (after any pruning), then its answer."""
        ...

    async def aclose(self) -> None: ...


class LocalSessions:
    """Sessions by id in this process, in order of last use (the first is the least recently used).

    No method awaits anything, so on one event loop each is atomic: two requests cannot both find a session idle
    and start a turn.
    """

    def __init__(
        self,
        max_sessions: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_sessions, self.ttl_seconds = max_sessions, ttl_seconds
        self._clock, self._wall_clock = clock, wall_clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    async def create(self, model: str, system: str | None = None) -> Session:
        self._expire()
        while len(self._sessions) >= self.max_sessions:
            self._evict_least_recently_used()
        now = self._wall_clock()
        session = Session(
            id=new_session_id(),
            model=model,
            created_at=now,
            messages=[ChatMessage("system", system)] if system else [],
            last_used_at=now,
            last_used=self._clock(),
        )
        self._sessions[session.id] = session
        return session

    async def get(self, session_id: str) -> Session:
        return self._get(session_id)

    def _get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or self._expired(session):
            self._sessions.pop(session_id, None)
            raise SessionNotFound(session_id)
        return session

    async def delete(self, session_id: str) -> None:
        self._get(session_id)
        del self._sessions[session_id]

    async def begin_turn(self, session_id: str) -> Session:
        session = self._get(session_id)
        if session.busy:
            raise SessionBusy(session_id)
        session.busy = True
        self._touch(session)
        return session

    async def end_turn(self, session: Session) -> None:
        session.busy = False
        self._touch(session)

    async def record(
        self, session: Session, kept: Sequence[ChatMessage], answer: ChatMessage, tokens: int, truncated_messages: int
    ) -> None:
        session.messages = [*kept, answer]
        session.tokens = tokens
        session.truncated_messages += truncated_messages

    def _touch(self, session: Session) -> None:
        session.last_used, session.last_used_at = self._clock(), self._wall_clock()
        if session.id in self._sessions:  # not if it was deleted or evicted during its turn
            self._sessions.move_to_end(session.id)

    def _expired(self, session: Session) -> bool:
        # A running turn keeps its session: its TTL counts from the turn's end.
        return not session.busy and self._clock() - session.last_used >= self.ttl_seconds

    def _expire(self) -> None:
        # In order of last use, so the expired ones come first; a busy one among them is passed over.
        for session in list(self._sessions.values()):
            if session.busy:
                continue
            if not self._expired(session):
                break
            del self._sessions[session.id]

    def _evict_least_recently_used(self) -> None:
        idle = next((s for s in self._sessions.values() if not s.busy), None)
        if idle is None:
            raise Overloaded(
                f"all LLM_MAX_SESSIONS={self.max_sessions} sessions are answering a turn; retry when one ends"
            )
        del self._sessions[idle.id]

    async def aclose(self) -> None:
        pass
