"""Bounded polling, the one way tests wait for what another process or thread writes late.

CI runs the suite on a loaded two-core machine, where "late" can be long: the server (Granian's worker process)
writes a request's access log line, counts it in /metrics and ends its span only after the response has reached
the client; the OTLP exporter sends spans in batches; a decode thread frees an engine slot a step after a cancel.
A test that reads such a thing at once is flaky. It polls here instead: until the probe sees the expected
value, or a generous timeout passes. A passing poll returns as soon as the value is there, so a long timeout
costs nothing; a failing one says what it waited for, for how long, and what it saw last.

A probe returns what it sees; the wait ends when that is truthy, or when `until(seen)` is, if given. An
AssertionError from the probe fails the wait at once (it asserts what must not happen meanwhile, such as the
server exiting); any other exception counts as "not yet" and is reported if the wait times out.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

SHOWN_CHARS = 4000  # of the last value's repr in a failure message


class _Poll:
    """One wait's deadline and what it saw last."""

    def __init__(
        self, what: str, timeout: float, until: Callable[[Any], object] | None, details: Callable[[], str] | None
    ) -> None:
        self.what, self.timeout, self.until, self.details = what, timeout, until, details
        self.started = time.monotonic()
        self.tries = 0
        self.seen: object = None
        self.error: Exception | None = None

    def satisfied(self, seen: object) -> bool:
        self.seen, self.error = seen, None
        return bool(self.until(seen) if self.until is not None else seen)

    def remaining(self) -> float:
        return self.started + self.timeout - time.monotonic()

    def timed_out(self) -> AssertionError:
        shown = repr(self.seen)
        if len(shown) > SHOWN_CHARS:
            shown = f"{shown[:SHOWN_CHARS]}... ({len(shown)} chars in all)"
        message = (
            f"waited {time.monotonic() - self.started:.1f} s (timeout {self.timeout} s, {self.tries} tries) "
            f"for {self.what}; last seen: {shown}"
        )
        if self.error is not None:
            message += f"; the last try raised {self.error!r}"
        if self.details is not None:
            message += f"\n{self.details()}"
        return AssertionError(message)


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    until: Callable[[T], object] | None = None,
    details: Callable[[], str] | None = None,
) -> T:
    """Call `probe` every `interval` seconds until what it returns is truthy (or satisfies `until`), and return
    that; past `timeout` seconds, fail with `what` and the last value seen (and `details()`, if given)."""
    poll = _Poll(what, timeout, until, details)
    while True:
        poll.tries += 1
        try:
            seen = probe()
            if poll.satisfied(seen):
                return seen  # type: ignore[return-value]  # what `until` accepted, or truthy: not None
        except AssertionError:
            raise
        except Exception as exc:
            poll.error = exc
        remaining = poll.remaining()
        if remaining <= 0:
            raise poll.timed_out()
        time.sleep(min(interval, remaining))


@overload
async def wait_until_async(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = ...,
    until: Callable[[T], object] | None = ...,
    details: Callable[[], str] | None = ...,
) -> T: ...


@overload
async def wait_until_async(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = ...,
    until: Callable[[T], object] | None = ...,
    details: Callable[[], str] | None = ...,
) -> T: ...


async def wait_until_async(
    probe: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    until: Callable[[Any], object] | None = None,
    details: Callable[[], str] | None = None,
) -> Any:
    """wait_until for async tests: the event loop runs between tries, and `probe` may be a coroutine function."""
    poll = _Poll(what, timeout, until, details)
    while True:
        poll.tries += 1
        try:
            seen = probe()
            if inspect.isawaitable(seen):
                seen = await seen
            if poll.satisfied(seen):
                return seen
        except AssertionError:
            raise
        except Exception as exc:
            poll.error = exc
        remaining = poll.remaining()
        if remaining <= 0:
            raise poll.timed_out()
        await asyncio.sleep(min(interval, remaining))
