"""Requests on their way to an engine (engines/arrivals.py): the count the app's first middleware keeps, and the
decode loop's gathering that reads it. The engine-level burst is in test_llamacpp_batching.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from litestar.types import Receive, Scope, Send

from llm_inference.api.http.arrivals import count_arrivals
from llm_inference.engines.arrivals import ARRIVALS, Arrivals, arrived, expect_arrivals
from llm_inference.engines.llamacpp import scheduler


def test_a_ticket_counts_until_its_request_arrives_and_only_once() -> None:
    arrivals = Arrivals()
    with arrivals.arriving() as first, arrivals.arriving():
        assert arrivals.pending == 2
        arrived()  # the innermost block's request: its ticket
        arrived()
        assert arrivals.pending == 1
        first.close()
        assert arrivals.pending == 0
    assert arrivals.pending == 0
    arrived()  # outside any request: nothing to count down
    assert arrivals.pending == 0


def test_a_request_of_several_generations_stays_on_its_way_until_each_arrived() -> None:
    arrivals = Arrivals()
    expect_arrivals(3)  # outside a request: nothing counted
    assert arrivals.pending == 0 and ARRIVALS.pending == 0
    with arrivals.arriving():
        expect_arrivals(3)  # choices 0, 1 and 2
        assert arrivals.pending == 3
        arrived()
        arrived()
        assert arrivals.pending == 1
    assert arrivals.pending == 0  # the request ended: the third will not come
    with arrivals.arriving():
        arrived()
        expect_arrivals(2)  # its one generation arrived already: nothing more expected
        assert arrivals.pending == 0


async def _call(app: Any, method: str, scope_type: str = "http") -> None:
    scope: dict[str, Any] = {"type": scope_type, "method": method, "path": "/api/generate", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    await app(scope, receive, send)


async def test_the_middleware_counts_a_post_until_it_arrives_or_ends() -> None:
    seen: list[tuple[str, int]] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(("before", ARRIVALS.pending))
        if scope.get("method") == "POST" and scope["path"] == "/api/generate":
            await asyncio.sleep(0)
            arrived()
            seen.append(("after", ARRIVALS.pending))

    app = count_arrivals(handler)
    await _call(app, "POST")
    await _call(app, "GET")
    assert seen == [("before", 1), ("after", 0), ("before", 0)]
    assert ARRIVALS.pending == 0

    async def refused(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("refused before reaching an engine")

    with pytest.raises(RuntimeError):
        await _call(count_arrivals(refused), "POST")
    assert ARRIVALS.pending == 0


class _RecordingWake:
    """Stands for the decode loop's Condition: records each wait and lets `step` change the world."""

    def __init__(self, step: Any) -> None:
        self.waits: list[float] = []
        self.step = step

    def wait(self, timeout: float) -> None:
        self.waits.append(timeout)
        self.step(len(self.waits))


class _Loop:
    """What DecodeLoop._gather_burst reads: one request waiting, the count, the condition."""

    def __init__(self, arrivals: Arrivals, wake: _RecordingWake) -> None:
        self._stopping, self._arrivals, self._wake = False, arrivals, wake
        self._waiting = ["the request that woke the loop"]


def test_a_lone_request_is_not_held_back() -> None:
    wake = _RecordingWake(lambda n: None)
    scheduler.DecodeLoop._gather_burst(_Loop(Arrivals(), wake))  # type: ignore[arg-type]
    assert wake.waits == []


def test_the_first_step_waits_for_requests_on_their_way_then_goes() -> None:
    arrivals = Arrivals()
    on_their_way = [arrivals.arriving(), arrivals.arriving()]
    tickets = [arrival.__enter__() for arrival in on_their_way]

    def step(n: int) -> None:  # one request arrives per wait
        tickets[n - 1].close()

    wake = _RecordingWake(step)
    scheduler.DecodeLoop._gather_burst(_Loop(arrivals, wake))  # type: ignore[arg-type]
    assert len(wake.waits) == 2 and arrivals.pending == 0
    assert all(0 < timeout <= scheduler.GATHER_POLL_SECONDS for timeout in wake.waits)
    for arrival in on_their_way:
        arrival.__exit__(None, None, None)


@pytest.mark.parametrize("clock_start", [1.0, 69_135.053834924, 3.5e6])  # a machine's uptime, in seconds
def test_a_burst_is_gathered_until_no_more_came_for_a_quiet_pause(monkeypatch, clock_start: float) -> None:
    """On a clock of our own, which each wait advances by its timeout: no real time, whatever the machine's load.
    A wait may pass the pause by the clock's rounding (at 69,135 s, (t + 0.005) - t is 0.005000000004656613):
    this test once failed on such a machine when it read the real clock and allowed nothing for it."""
    loop: _Loop
    clock = [clock_start]
    monkeypatch.setattr(scheduler.time, "monotonic", lambda: clock[0])

    def step(n: int) -> None:  # a third request comes during the first pause, none after
        clock[0] += wake.waits[-1]
        if n == 1:
            loop._waiting.append("a straggler")

    wake = _RecordingWake(step)
    loop = _Loop(Arrivals(), wake)
    loop._waiting.append("the second of the burst")
    scheduler.DecodeLoop._gather_burst(loop)  # type: ignore[arg-type]
    assert len(loop._waiting) == 3 and len(wake.waits) == 2, wake.waits
    assert all(0 < timeout <= scheduler.GATHER_QUIET_SECONDS + 1e-9 for timeout in wake.waits), wake.waits


def test_a_request_that_never_arrives_holds_the_first_step_back_only_so_long(monkeypatch) -> None:
    monkeypatch.setattr(scheduler, "GATHER_MAX_SECONDS", 0.02)
    arrivals = Arrivals()
    with arrivals.arriving():
        wake = _RecordingWake(lambda n: time.sleep(scheduler.GATHER_POLL_SECONDS))
        started = time.monotonic()
        scheduler.DecodeLoop._gather_burst(_Loop(arrivals, wake))  # type: ignore[arg-type]
        assert time.monotonic() - started >= 0.02 and arrivals.pending == 1
        assert wake.waits and sum(wake.waits) <= 0.02 + 1e-9
