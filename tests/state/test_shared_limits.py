"""The request and token buckets in a real Valkey/Redis server: exact when several clients (replicas) decide at
once, the same decisions as the in-process buckets, and the failure policy when the store is gone or mute."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_inference.state.limits import CallerLimits, LocalLimits
from llm_inference.state.shared_limits import SharedLimits
from llm_inference.state.store import StateStore
from tests.polling import wait_until_async
from tests.server import free_port
from tests.state.conftest import Recorder, make_store
from tests.state_server import StateServer

# Longer than any call here may take: a test that would hang fails instead.
BOUND_SECONDS = 10


async def test_a_burst_from_two_replicas_gets_exactly_the_limit(store: StateStore) -> None:
    # A second client with its own connections, on the same keys: another replica.
    other = StateStore(store.config)
    try:
        replicas = [SharedLimits(store), SharedLimits(other)]
        ten = CallerLimits(requests_per_minute=10)  # the bucket refills one request every 6 s
        decisions = await asyncio.gather(*(replicas[n % 2].admit("key-1", ten) for n in range(40)))
    finally:
        await other.aclose()
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert sorted(d.headers()["RateLimit-Remaining"] for d in allowed) == [str(n) for n in range(10)]
    for refused in (d for d in decisions if not d.allowed):
        assert refused.refused_by == "requests" and 1 <= refused.retry_after_seconds <= 6
        assert refused.headers()["RateLimit-Remaining"] == "0"
    assert (await SharedLimits(store).admit("key-2", ten)).allowed, "each caller has its own bucket"


async def test_tokens_charged_by_two_replicas_at_once_all_count(store: StateStore) -> None:
    other = StateStore(store.config)
    budget = CallerLimits(tokens_per_minute=60)  # a token a second
    try:
        replicas = [SharedLimits(store), SharedLimits(other)]
        assert (await replicas[0].admit("key-1", budget)).allowed
        await asyncio.gather(*(replicas[n % 2].charge("key-1", budget, 5) for n in range(20)))
        refused = await replicas[1].admit("key-1", budget)
    finally:
        await other.aclose()
    # 100 tokens against 60: a debt of 40, paid back at a token a second (plus the moments the test took).
    assert not refused.allowed and refused.refused_by == "tokens"
    assert 35 <= refused.retry_after_seconds <= 41
    assert refused.headers()["X-RateLimit-Remaining-Tokens"] == "0"
    assert "LLM_TOKENS_PER_MINUTE=60 tokens" in refused.message()


async def test_the_store_decides_as_the_local_buckets_do(store: StateStore) -> None:
    shared, local = SharedLimits(store), LocalLimits()
    both = CallerLimits(requests_per_minute=3, tokens_per_minute=1000)
    for limits in (shared, local):
        decisions = [await limits.admit("key-1", both) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[0].headers()["RateLimit-Remaining"] == "2"
        assert decisions[0].headers()["X-RateLimit-Remaining-Tokens"] == "1000"
        await limits.charge("key-1", both, 2000)
        refused = await limits.admit("key-2", both)
        assert refused.allowed, "another caller's budget is untouched"
        refused = await limits.admit("key-1", both)
        assert refused.refused_by == "tokens" and refused.retry_after_seconds >= 60


async def test_a_bucket_is_forgotten_once_it_would_be_full_again(store: StateStore) -> None:
    await SharedLimits(store).admit("key-1", CallerLimits(requests_per_minute=60))
    ttl_ms = await store.client.pttl(store.key("limits", "key-1", "requests"))
    assert 0 < ttl_ms <= 2000, "one request of 60 a minute is refilled in a second (and a margin)"


@pytest.fixture
def mute_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a store that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("gone", ["refused", "mute"])
async def test_without_the_store_requests_go_through_with_a_fallback_counted(gone: str, mute_server: int) -> None:
    port = free_port() if gone == "refused" else mute_server
    recorder = Recorder()
    store = make_store(f"redis://127.0.0.1:{port}/0", recorder, LLM_STATE_TIMEOUT_SECONDS="0.2")
    limits = SharedLimits(store)
    try:
        async with asyncio.timeout(BOUND_SECONDS):
            first = await limits.admit("key-1", CallerLimits(requests_per_minute=1))
            second = await limits.admit("key-1", CallerLimits(requests_per_minute=1))
            await limits.charge("key-1", CallerLimits(tokens_per_minute=10), 50)
    finally:
        await store.aclose()
    assert first.allowed and second.allowed and first.headers() == {}, "no bucket, no RateLimit headers"
    assert recorder.errors()[0] == ("connection" if gone == "refused" else "timeout")
    assert "backoff" in recorder.errors(), "right after a failure the store is left alone, not tried again"
    assert recorder.fallbacks[:2] == [("rate_limit", "allowed")] * 2 and ("tokens", "not_counted") in recorder.fallbacks
    assert recorder.reachability == [False]


async def test_fail_closed_refuses_with_a_retry_after(mute_server: int) -> None:
    recorder = Recorder()
    store = make_store(f"redis://127.0.0.1:{mute_server}/0", recorder, LLM_STATE_TIMEOUT_SECONDS="0.2")
    try:
        async with asyncio.timeout(BOUND_SECONDS):
            refused = await SharedLimits(store, fail_open=False).admit("key-1", CallerLimits(requests_per_minute=5))
    finally:
        await store.aclose()
    assert not refused.allowed and refused.refused_by == "store" and refused.retry_after_seconds >= 1
    assert refused.headers() == {"Retry-After": str(refused.retry_after_seconds)}
    assert "LLM_RATE_LIMIT_ON_STATE_FAILURE=closed" in refused.message()
    assert recorder.fallbacks == [("rate_limit", "refused")]


async def test_limits_resume_when_the_store_comes_back(tmp_path: Path) -> None:
    server = StateServer(tmp_path).start()
    recorder = Recorder()
    store = make_store(server.url, recorder, LLM_STATE_TIMEOUT_SECONDS="0.2")
    limits, two = SharedLimits(store), CallerLimits(requests_per_minute=2)
    try:
        assert (await limits.admit("key-1", two)).headers()["RateLimit-Remaining"] == "1"
        server.stop()
        async with asyncio.timeout(BOUND_SECONDS):
            assert (await limits.admit("key-1", two)).headers() == {}, "let through, uncounted"
        server.start()  # empty: a server without persistence forgets the buckets

        async def counted() -> bool:
            return "RateLimit-Remaining" in (await limits.admit("key-2", two)).headers()

        await wait_until_async(counted, timeout=30, what="requests to be counted again", interval=0.2)
        assert [(await limits.admit("key-2", two)).allowed for _ in range(2)] == [True, False], "the limit holds"
        assert recorder.reachability == [False, True]
    finally:
        await store.aclose()
        server.stop()
