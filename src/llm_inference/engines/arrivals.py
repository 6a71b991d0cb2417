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
    """One request's place in the count: one generation on its way, or several (`expect_arrivals`)."""

    __slots__ = ("_arrivals", "_remaining")

    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals, self._remaining = arrivals, 1

    def expect(self, generations: int) -> None:
        """The request will hand `generations` generations to engines, not one."""
        more = generations - 1 if self._remaining else 0
        if more > 0:
            self._remaining += more
            self._arrivals._add(more)

    def arrive_one(self) -> None:
        if self._remaining:
            self._remaining -= 1
            self._arrivals._add(-1)

    def close(self) -> None:
        """The request ended: whatever it still expected will not come."""
        if self._remaining:
            self._arrivals._add(-self._remaining)
            self._remaining = 0


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
        self._add(1)
        ticket = Ticket(self)
        token = _current.set(ticket)
        try:
            yield ticket
        finally:
            _current.reset(token)
            ticket.close()

    def _add(self, count: int) -> None:
        with self._lock:
            self._pending += count


def expect_arrivals(generations: int) -> None:
    """The calling request is about to start several generations (the `n` choices, a batch's prompts): it stays
    on its way until each of them has been queued (or it ends), instead of counting down when the first arrives.
    An idle engine then gathers all of them into its first step, not one alone and the rest a step later (with a
    shared KV pool, which neighbours a step holds can turn a near-tie, so a seeded request would not be
    reproducible)."""
    ticket = _current.get()
    if ticket is not None:
        ticket.expect(generations)


ARRIVALS = Arrivals()
_current: ContextVar[Ticket | None] = ContextVar("llm_inference_arrival", default=None)


def arrived() -> None:
    """The request of the calling context has reached its engine's queue: no longer on its way."""
    ticket = _current.get()
    if ticket is not None:
        ticket.arrive_one()
