"""Faults in the real engine: timeouts, a failing decode, admission or batch, a wedged or dead decode loop,
and keep-alive pings.

Faults are injected into the real llama.cpp calls the decode thread makes (`llama_cpp.llama_decode`,
`llama_memory_seq_rm`, the sampler constructors), so everything around them, the decode loop included, is the
code that runs in production.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator

import httpx
import llama_cpp
import pytest
from litestar.testing import AsyncTestClient

from llm_inference.app import create_app
from tests.api.sse import parse_events
from tests.conftest import make_settings, wait_ready
from tests.polling import wait_until_async
from tests.telemetry.scrape import Scrape

pytestmark = pytest.mark.model

TIMEOUT_SECONDS = 10
STALL_SECONDS = 1
PING_SECONDS = 0.1
LONG = {"prompt": "Count: 1, 2, 3,", "max_tokens": 400, "ignore_eos": True, "temperature": 0}


class DecodeFaults:
    """Wraps llama_decode: after a given number of further calls, block (a wedged kernel) or fail once."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.calls = 0
        self.released = threading.Event()
        self.released.set()
        self.blocked = threading.Event()
        self._block_at: int | None = None
        self._fail_at: int | None = None
        self._crash_at: int | None = None
        self._raise_at: int | None = None
        self.raised = 0  # calls that raised

    def crash_after(self, calls: int) -> None:
        """Raise out of every decode call from then on: the binding itself broken."""
        self._crash_at = self.calls + calls

    def raise_once_after(self, calls: int) -> None:
        """Raise out of one decode call: a bug in the binding rather than a status from llama.cpp."""
        self._raise_at = self.calls + calls

    def block_after(self, calls: int) -> None:
        self.released.clear()
        self._block_at = self.calls + calls

    def fail_after(self, calls: int) -> None:
        self._fail_at = self.calls + calls

    def release(self) -> None:
        self._block_at = None
        self.released.set()

    def __call__(self, ctx, batch) -> int:  # type: ignore[no-untyped-def]
        self.calls += 1
        if self._crash_at is not None and self.calls > self._crash_at:
            self.raised += 1
            raise RuntimeError("injected: the binding is broken")
        if self._raise_at is not None and self.calls > self._raise_at:
            self._raise_at = None
            self.raised += 1
            raise RuntimeError("injected: llama_decode raised")
        if self._fail_at is not None and self.calls > self._fail_at:
            self._fail_at = None
            return -3  # llama.cpp: "internal error during decode"
        if self._block_at is not None and self.calls > self._block_at:
            self.blocked.set()
            self.released.wait(60)
            self.blocked.clear()
        return self.real(ctx, batch)


class FailOnce:
    """Wraps a llama_cpp function: once armed, its next call raises, as a bug or a broken binding would."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.armed = False
        self.raised = 0

    def __call__(self, *args):  # type: ignore[no-untyped-def]
        if self.armed:
            self.armed = False
            self.raised += 1
            raise RuntimeError(f"injected: {self.real.__name__} failed")
        return self.real(*args)


@pytest.fixture(scope="module")
async def tuned() -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    settings = make_settings(
        LLM_MAX_CONCURRENT_REQUESTS="2",
        LLM_REQUEST_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
        LLM_ENGINE_STALL_SECONDS=str(STALL_SECONDS),
        LLM_SSE_PING_SECONDS=str(PING_SECONDS),
        LLM_MAX_TOKENS_LIMIT="512",
        # One thread: a decode step then never waits on a descheduled sibling thread on a busy test machine.
        LLM_THREADS="1",
    )
    async with AsyncTestClient(create_app(settings), timeout=120) as client:
        await wait_ready(client)
        yield client


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    injected = DecodeFaults(llama_cpp.llama_decode)
    monkeypatch.setattr(llama_cpp, "llama_decode", injected)
    yield injected
    injected.release()


def engine_of(client: AsyncTestClient):  # type: ignore[no-untyped-def,type-arg]
    return client.app.state.service.registry.loaded_engine(None)


async def wait_idle(client: AsyncTestClient, timeout: float = 30) -> None:  # type: ignore[type-arg]
    """The engine holds no request and the admission no slot: everything the request had is freed (the decode
    thread frees a cancelled sequence at its next step)."""
    engine, service = engine_of(client), client.app.state.service
    await wait_until_async(
        lambda: (engine.stats(), service.admission.in_flight),
        until=lambda seen: seen[0].running == 0 and seen[0].waiting == 0 and seen[1] == 0,
        timeout=timeout,
        what="the engine to hold no request and the admission no slot ((engine stats, slots in flight))",
        interval=0.02,
    )


async def assert_no_more_decoding(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    engine = engine_of(client)
    steps = engine.decode_steps
    await asyncio.sleep(0.5)
    assert engine.decode_steps == steps, "the engine kept decoding a request that had ended"


async def engine_states(client: AsyncTestClient) -> tuple[dict[str, float], float]:  # type: ignore[type-arg]
    """/metrics' llm_engine_state of the default model by state, and llm_ready."""
    scraped = Scrape((await client.get("/metrics")).text)
    states = {s.labels["state"]: s.value for s in scraped.matching("llm_engine_state", model="smollm2-135m-instruct")}
    return states, scraped.value("llm_ready")


def in_background(client: AsyncTestClient, path: str, body: dict) -> concurrent.futures.Future:  # type: ignore[type-arg]
    """POST on the app's own event loop, so the test can make other requests meanwhile: the test client's
    requests block the test's loop until they are answered."""

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app", timeout=120) as direct:
            return await direct.post(path, json=body)

    return client.blocking_portal.start_task_soon(post)


async def test_a_request_past_the_timeout_gets_504_and_its_generation_stops(tuned, faults) -> None:
    faults.block_after(3)
    started = time.monotonic()
    response = await tuned.post("/api/generate", json=LONG)
    assert TIMEOUT_SECONDS <= time.monotonic() - started < TIMEOUT_SECONDS + 5
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["type"] == "timeout" and "LLM_REQUEST_TIMEOUT_SECONDS" in error["message"]
    faults.release()
    await wait_idle(tuned)
    await assert_no_more_decoding(tuned)


async def test_a_stream_past_the_timeout_ends_with_an_error_event_and_pings_meanwhile(tuned, faults) -> None:
    faults.block_after(5)  # a few tokens go out, then the engine goes silent until the deadline
    response = await tuned.post("/api/generate/stream", json=LONG)
    assert response.status_code == 200
    events = parse_events(response.text)
    assert [e["type"] for e in events][-1] == "error", events
    assert events[-1]["error"]["type"] == "timeout"
    assert any(e["type"] == "delta" for e in events)
    # While no token came, the stream wrote keep-alive comments: that write is what reveals a gone client.
    pings = response.text.count(": ping\n\n")
    assert pings >= 5, response.text[-500:]
    faults.release()
    await wait_idle(tuned)
    await assert_no_more_decoding(tuned)


async def test_a_decode_failure_fails_that_request_with_500_and_a_log_line_not_the_process(
    tuned, faults, caplog: pytest.LogCaptureFixture
) -> None:
    faults.fail_after(2)
    with caplog.at_level(logging.WARNING):
        response = await tuned.post("/api/generate", json=LONG)
    assert response.status_code == 500, response.text
    assert response.json()["error"]["type"] == "engine_error"
    assert any(getattr(r, "reason", "") == "llama_decode returned -3" for r in caplog.records), caplog.records
    assert "Count: 1, 2, 3" not in caplog.text and "Count: 1, 2, 3" not in response.text
    await wait_idle(tuned)
    # The engine still serves, and the service still counts itself ready.
    again = await tuned.post("/api/generate", json={"prompt": "Hi", "max_tokens": 3})
    assert again.status_code == 200, again.text
    assert (await tuned.get("/health/ready")).status_code == 200


async def test_a_decode_failure_mid_stream_ends_the_stream_with_an_error_event(tuned, faults) -> None:
    faults.fail_after(6)
    body = {"messages": [{"role": "user", "content": "Count to 100"}], "max_tokens": 400, "ignore_eos": True}
    response = await tuned.post("/api/chat/stream", json=body)
    assert response.status_code == 200
    events = parse_events(response.text)
    assert any(e["type"] == "delta" for e in events)
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "engine_error", events[-1]
    await wait_idle(tuned)


async def test_a_wedged_engine_turns_readiness_503_with_the_reason_until_it_moves(tuned, faults) -> None:
    assert (await tuned.get("/health/ready")).status_code == 200
    faults.block_after(2)
    request = in_background(tuned, "/api/generate", {**LONG, "max_tokens": 20})
    assert await asyncio.to_thread(faults.blocked.wait, 30)
    ready = await wait_until_async(
        lambda: tuned.get("/health/ready"),
        until=lambda response: response.status_code != 200,
        timeout=STALL_SECONDS + 3,
        what=f"readiness to turn away from 200 once the engine made no progress for {STALL_SECONDS} s",
        interval=0.1,
    )
    assert ready.status_code == 503, ready.text
    assert ready.json()["reason"].startswith("engine stalled: 1 request(s) waiting and no decode progress")
    assert "LLM_ENGINE_STALL_SECONDS=1" in ready.json()["reason"]
    # Liveness is another question: a stall can end (it does below), so no restart.
    assert (await tuned.get("/health/live")).status_code == 200
    # What the alerts read: not ready, the engine stalled.
    assert await engine_states(tuned) == ({"healthy": 0, "stalled": 1, "dead": 0}, 0)

    faults.release()
    assert (await asyncio.wrap_future(request)).status_code == 200
    assert (await tuned.get("/health/ready")).status_code == 200
    assert await engine_states(tuned) == ({"healthy": 1, "stalled": 0, "dead": 0}, 1)


async def test_a_prompt_the_tokenizer_reads_as_nothing_is_served_and_the_engine_survives(client) -> None:
    """Found by fuzzing: "\\x13" tokenizes to no token, and a sequence without one killed the decode loop."""
    for path in ("/api/generate", "/api/generate/stream"):
        response = await client.post(path, json={"prompt": "\u0013", "max_tokens": 2})
        assert response.status_code == 200, response.text
    assert (await client.get("/health/ready")).status_code == 200
    assert (await client.post("/api/generate", json={"prompt": "Hi", "max_tokens": 2})).status_code == 200


async def test_a_failure_while_sampling_one_sequence_fails_only_that_request(tuned, monkeypatch) -> None:
    real = llama_cpp.llama_sampler_sample
    calls = 0

    def sample_failing_once(sampler, ctx, row):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("injected: sampling failed")
        return real(sampler, ctx, row)

    monkeypatch.setattr(llama_cpp, "llama_sampler_sample", sample_failing_once)
    failed = await tuned.post("/api/generate", json={**LONG, "max_tokens": 20})
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "engine_error", failed.text
    assert "sampling failed" in failed.json()["error"]["message"]
    await wait_idle(tuned)
    # The decode loop lives on: the next request is served and the probes stay green.
    served = await tuned.post("/api/generate", json={**LONG, "max_tokens": 5})
    assert served.status_code == 200 and served.json()["usage"]["completion_tokens"] == 5, served.text
    assert (await tuned.get("/health/live")).status_code == 200
    assert (await tuned.get("/health/ready")).status_code == 200


async def start_long_request(
    client: AsyncTestClient,
    max_tokens: int,  # type: ignore[type-arg]
) -> concurrent.futures.Future:  # type: ignore[type-arg]
    """A request that is decoding (it holds a slot and the loop steps) when this returns."""
    engine = engine_of(client)
    steps = engine.decode_steps
    request = in_background(client, "/api/generate", {**LONG, "max_tokens": max_tokens})

    def decoding() -> bool:
        if engine.stats().running == 1 and engine.decode_steps > steps + 2:
            return True
        assert not request.done(), "the long request never started decoding"
        return False

    await wait_until_async(
        decoding,
        timeout=30,
        what="the long request to be decoding (one running, more than two decode steps since it was sent)",
        interval=0.01,
        details=lambda: f"engine stats {engine.stats()}, decode steps since: {engine.decode_steps - steps}",
    )
    return request


async def assert_still_serving(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    served = await client.post("/api/generate", json={**LONG, "max_tokens": 5})
    assert served.status_code == 200 and served.json()["usage"]["completion_tokens"] == 5, served.text
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200


@pytest.mark.parametrize("call", ["llama_memory_seq_rm", "llama_sampler_init_greedy"])
async def test_a_failure_admitting_a_request_fails_that_request_only(tuned, monkeypatch, call) -> None:
    """Admission frees KV cells for the new sequence (llama_memory_seq_rm) and builds its sampler chain."""
    failing = FailOnce(getattr(llama_cpp, call))
    monkeypatch.setattr(llama_cpp, call, failing)
    neighbour = await start_long_request(tuned, max_tokens=60)
    failing.armed = True
    refused = await tuned.post("/api/generate", json={"prompt": "Hi", "max_tokens": 3, "temperature": 0})
    assert failing.raised == 1
    assert refused.status_code == 500 and refused.json()["error"]["type"] == "engine_error", refused.text
    assert "admission failed" in refused.json()["error"]["message"]
    # The request already decoding runs to its end, untouched.
    finished = await asyncio.wrap_future(neighbour)
    assert finished.status_code == 200 and finished.json()["usage"]["completion_tokens"] == 60, finished.text
    await wait_idle(tuned)
    await assert_still_serving(tuned)


async def test_a_failure_building_one_sequences_batch_rows_fails_only_that_request(tuned, monkeypatch) -> None:
    """Batch building makes no llama.cpp call, so the fault goes into the loop's own row writer, for the
    second sequence's slot only."""
    loop = engine_of(tuned)._loop
    neighbour = await start_long_request(tuned, max_tokens=60)
    busy_slot = next(i for i, slot in enumerate(loop._slots) if slot.sequence is not None)
    real_put = loop._put

    def put_failing_for_the_other_slot(row, token, pos, seq_id, logits):  # type: ignore[no-untyped-def]
        if seq_id != busy_slot:
            raise RuntimeError("injected: writing a batch row failed")
        real_put(row, token, pos, seq_id, logits)

    monkeypatch.setattr(loop, "_put", put_failing_for_the_other_slot)
    refused = await tuned.post("/api/generate", json={"prompt": "Hello there", "max_tokens": 3})
    monkeypatch.undo()
    assert refused.status_code == 500 and refused.json()["error"]["type"] == "engine_error", refused.text
    assert "batch building failed" in refused.json()["error"]["message"]
    finished = await asyncio.wrap_future(neighbour)
    assert finished.status_code == 200 and finished.json()["usage"]["completion_tokens"] == 60, finished.text
    await wait_idle(tuned)
    await assert_still_serving(tuned)


async def test_an_exception_out_of_llama_decode_fails_its_batch_not_the_loop(tuned, faults) -> None:
    faults.raise_once_after(2)
    failed = await tuned.post("/api/generate", json={**LONG, "max_tokens": 20})
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "engine_error", failed.text
    assert "llama_decode raised RuntimeError" in failed.json()["error"]["message"]
    await wait_idle(tuned)
    await assert_still_serving(tuned)


async def test_zz_a_dead_decode_loop_fails_liveness_so_the_orchestrator_restarts_the_pod(
    tuned, faults, monkeypatch
) -> None:
    """Runs last in this module (it kills the shared service's decode loop): pytest keeps definition order.

    What still kills the loop: a failure in its shared bookkeeping, here freeing a failed sequence's KV cells
    (the context's state is then unknown), after a decode call that raised."""
    assert (await tuned.get("/health/live")).status_code == 200
    real_seq_rm = llama_cpp.llama_memory_seq_rm

    def seq_rm_failing_once_decode_raised(*args):  # type: ignore[no-untyped-def]
        if faults.raised:
            raise RuntimeError("injected: freeing KV cells failed")
        return real_seq_rm(*args)

    monkeypatch.setattr(llama_cpp, "llama_memory_seq_rm", seq_rm_failing_once_decode_raised)
    faults.crash_after(2)
    in_flight = await tuned.post("/api/generate", json={**LONG, "max_tokens": 20})
    assert in_flight.status_code == 500 and in_flight.json()["error"]["type"] == "engine_error", in_flight.text
    live = await tuned.get("/health/live")
    assert live.status_code == 503, live.text
    assert live.json() == {
        "status": "dead",
        "reason": "engine dead (smollm2-135m-instruct): the llama.cpp decode loop stopped",
    }
    ready = await tuned.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["reason"] == "engine dead: the llama.cpp decode loop stopped"
    assert await engine_states(tuned) == ({"healthy": 0, "stalled": 0, "dead": 1}, 0)
    refused = await tuned.post("/api/generate", json={"prompt": "Hi", "max_tokens": 2})
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "engine_unavailable", refused.text
