"""tests/polling.py: a poll returns the first value that passes, and a poll that times out says what it waited
for, how long, and what it saw last."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.polling import wait_until, wait_until_async


def test_returns_the_first_truthy_value_or_the_first_that_until_accepts() -> None:
    values = iter([None, [], ["line"], ["line", "more"]])
    assert wait_until(lambda: next(values), timeout=5, what="a line", interval=0) == ["line"]
    counts = itertools.count()
    assert wait_until(lambda: next(counts), until=lambda n: n >= 3, timeout=5, what="three", interval=0) == 3
    assert wait_until(lambda: 0, until=lambda n: n == 0, timeout=5, what="zero") == 0  # a falsy value `until` takes


def test_a_timeout_names_what_was_awaited_and_the_last_value_seen() -> None:
    with pytest.raises(AssertionError) as failed:
        wait_until(lambda: {"busy": True}, until=lambda v: not v["busy"], timeout=0.2, what="the session idle")
    message = str(failed.value)
    assert "for the session idle" in message and "last seen: {'busy': True}" in message
    assert "timeout 0.2 s" in message


def test_a_long_value_is_cut_and_the_last_exception_and_details_are_shown() -> None:
    tries = itertools.count()

    def probe() -> str:
        if next(tries):
            raise ConnectionError("refused")
        return "x" * 10_000  # the first try only

    with pytest.raises(AssertionError) as failed:
        wait_until(probe, until=lambda _: False, timeout=0.2, what="x", interval=0.01, details=lambda: "the log")
    message = str(failed.value)
    assert len(message) < 5000 and "(10002 chars in all)" in message and message.endswith("\nthe log")
    assert "; the last try raised ConnectionError('refused')" in message


def test_an_assertion_in_the_probe_fails_at_once() -> None:
    calls = itertools.count()

    def probe() -> None:
        next(calls)
        raise AssertionError("server exited")

    with pytest.raises(AssertionError, match="server exited"):
        wait_until(probe, timeout=60, what="never")
    assert next(calls) == 1


async def test_the_async_twin_takes_sync_and_async_probes() -> None:
    values = iter([0, 0, 7])

    async def later() -> int:
        await asyncio.sleep(0)
        return next(values)

    assert await wait_until_async(later, timeout=5, what="seven", interval=0) == 7
    assert await wait_until_async(lambda: "ready", timeout=5, what="ready") == "ready"
    with pytest.raises(AssertionError, match=r"for nothing; last seen: None"):
        await wait_until_async(lambda: None, timeout=0.1, what="nothing")
