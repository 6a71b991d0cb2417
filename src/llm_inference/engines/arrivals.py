"""Requests on their way to an engine: received by the server, not yet queued by an engine nor answered.

The llama.cpp decode loop, woken from idle by a request, waits for the rest of a burst before its first step,
so that prompts arriving together are read together (scheduler.DecodeLoop._gather_burst). The requests it
cannot see yet are those the event loop is still reading, validating, rendering or tokenizing; this count is
how it knows of them. A request counts from the moment the app's outermost middleware sees it
(api/http/arrivals.py) until its engine queues it (`arrived()`, called in the engine's submit), or until it ends
without reaching one (a refusal, a tokenize or embeddings request). So a lone request starts at once, and a
burst is gathered exactly until its last request has been queued, however long the event loop took to get
each one there. One count per process: a request for another model can hold an idle engine's first step back,
at most GATHER_MAX_SECONDS.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar


class Ticket:
    """One request's place in the count; closing it twice counts once."""

    __slots__ = ("_arrivals", "_open")

    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals, self._open = arrivals, True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._arrivals._leave()


class Arrivals:
    def __init__(self) -> None:
        self._pending = 0
        self._lock = threading.Lock()  # the count is read by decode threads, changed on event loops

    @property
    def pending(self) -> int:
        return self._pending

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Ticket]:
        """Count the request handled inside this block (and the tasks it starts) until it arrives or ends."""
        with self._lock:
            self._pending += 1
        ticket = Ticket(self)
        token = _current.set(ticket)
        try:
            yield ticket
        finally:
            _current.reset(token)
            ticket.close()

    def _leave(self) -> None:
        with self._lock:
            self._pending -= 1


ARRIVALS = Arrivals()
_current: ContextVar[Ticket | None] = ContextVar("llm_inference_arrival", default=None)


def arrived() -> None:
    """The request of the calling context has reached its engine's queue: no longer on its way."""
    ticket = _current.get()
    if ticket is not None:
        ticket.close()
