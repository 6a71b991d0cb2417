"""The decode thread's hand-over to an event loop (engines/llamacpp/handoff.py): in order, from another thread,
woken by a write that keeps the GIL, nothing lost when a loop has closed or cannot watch a pipe."""

from __future__ import annotations

import asyncio
import ctypes
import threading

from llm_inference.engines.llamacpp import handoff
from llm_inference.engines.llamacpp.handoff import Handoff


def test_the_wake_up_write_keeps_the_gil() -> None:
    write = handoff._write_keeping_the_gil
    assert write is not None, "libc's write was not found: every hand-over falls back to call_soon_threadsafe"
    # ctypes.PyDLL functions carry FUNCFLAG_PYTHONAPI: called without releasing the GIL (CDLL's release it).
    assert write._flags_ & ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]


async def test_items_posted_from_another_thread_arrive_in_order_on_the_loop() -> None:
    box = handoff.for_running_loop()
    assert handoff.for_running_loop() is box, "one inbox per loop"
    loop_thread = threading.get_ident()
    received: list[tuple[int, int]] = []
    done = asyncio.Event()

    def receive(item: int) -> None:
        received.append((item, threading.get_ident()))
        if item == 999:
            done.set()

    def decode_thread() -> None:
        for step in range(100):  # many small posts, as steps are: some coalesce into one wake-up, none is lost
            box.post([(receive, step * 10 + k) for k in range(10)])

    worker = threading.Thread(target=decode_thread)
    worker.start()
    await asyncio.wait_for(done.wait(), 30)
    worker.join()
    assert [item for item, _ in received] == list(range(1000))
    assert {thread for _, thread in received} == {loop_thread}


async def test_one_receivers_failure_does_not_keep_the_others_results_from_them(caplog) -> None:
    box = handoff.for_running_loop()
    got: list[str] = []
    arrived = asyncio.Event()

    def broken(item: str) -> None:
        raise RuntimeError("a receiver that fails")

    def fine(item: str) -> None:
        got.append(item)
        arrived.set()

    threading.Thread(target=box.post, args=([(broken, "x"), (fine, "y")],)).start()
    await asyncio.wait_for(arrived.wait(), 30)
    assert got == ["y"]
    assert "delivering a result to its request failed" in caplog.text


def test_a_closed_loop_gets_nothing_and_posting_to_it_is_harmless() -> None:
    loop = asyncio.new_event_loop()
    box = Handoff(loop)
    loop.close()
    box.post([(print, "nobody is listening")])  # neither raises nor blocks


class ProactorLike(asyncio.SelectorEventLoop):
    """A loop that cannot watch a file descriptor, as Windows' proactor loop."""

    def add_reader(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError


def test_a_loop_that_cannot_watch_a_pipe_is_handed_items_through_call_soon_threadsafe() -> None:
    loop = ProactorLike()
    try:
        box = Handoff(loop)
        received: list[int] = []
        done = asyncio.Event()

        def receive(item: int) -> None:
            received.append(item)
            if len(received) == 3:
                loop.call_soon(done.set)

        threading.Thread(target=box.post, args=([(receive, 1), (receive, 2), (receive, 3)],)).start()
        loop.run_until_complete(asyncio.wait_for(done.wait(), 30))
        assert received == [1, 2, 3]
    finally:
        loop.close()
