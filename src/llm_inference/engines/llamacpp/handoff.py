"""Results handed from the decode thread to an event loop without the decode thread giving up the GIL.

`loop.call_soon_threadsafe` wakes the loop by writing a byte to its self-pipe with `socket.send`, which releases
the GIL for the system call. A thread that wants the GIL at that moment (the event loop, woken by a client's I/O
or by the last hand-over) takes it, and the decode thread then waits to get it back before it can reach
`llama_decode`: 0.39 ms a step in a server streaming one request, against 0.08 ms in-process (per-step phase
timers, 2-core AMD EPYC, ~10 ms steps). Here the decode thread appends to a deque (atomic under the GIL) and
writes the wake-up byte with libc's `write` called through `ctypes.PyDLL`, which keeps the GIL: the loop wakes,
and gets the GIL a few microseconds later, when the decode thread enters `llama_decode` (which releases it).

A loop without `add_reader` (Windows' proactor) or a platform without libc's `write` falls back to
`call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]  # a request's receiver, called on its event loop with each item handed to it


def _libc_write() -> Callable[[int, bytes, int], int] | None:
    """libc's write(2) as a function that keeps the GIL (ctypes.PyDLL), or None where this process has no libc."""
    try:
        write = ctypes.PyDLL(None).write
    except (AttributeError, OSError, TypeError):  # not Linux or macOS
        return None
    write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    write.restype = ctypes.c_ssize_t
    return write


_write_keeping_the_gil = _libc_write()

_WAKE = b"\x01"


class Handoff:
    """One event loop's inbox: `post` (receiver, item) pairs from any thread; each receiver is called with its
    item on the loop, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # not a strong one: the loop keeps this alive (its reader), not the reverse
        self._items: collections.deque[tuple[Emit, Any]] = collections.deque()
        # Set when a wake-up byte is on its way and the loop has not drained since: further posts add to the deque
        # only. The loop clears it before draining, so an item appended after the clear rings again.
        self._rung = False
        self._pipe: tuple[int, int] | None = None
        if _write_keeping_the_gil is not None:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            try:
                loop.add_reader(read_fd, self._drain)
            except NotImplementedError:
                os.close(read_fd)
                os.close(write_fd)
            else:
                self._pipe = (read_fd, write_fd)
                weakref.finalize(self, _close_pipe, read_fd, write_fd)

    def post(self, items: list[tuple[Emit, Any]]) -> None:
        """Hand `items` to the loop (from the decode thread). Dropped if the loop has closed: nobody waits for them."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            return
        if self._pipe is None:
            loop.call_soon_threadsafe(self._deliver_all, items)
            return
        self._items.extend(items)
        if not self._rung:
            self._rung = True
            assert _write_keeping_the_gil is not None
            _write_keeping_the_gil(self._pipe[1], _WAKE, 1)  # a full pipe (never, while rung) loses nothing

    def _drain(self) -> None:
        assert self._pipe is not None
        with contextlib.suppress(BlockingIOError):  # another drain read it already
            os.read(self._pipe[0], 4096)
        self._rung = False
        items = self._items
        while items:
            self._deliver_one(items.popleft())

    def _deliver_all(self, items: list[tuple[Emit, Any]]) -> None:
        for item in items:
            self._deliver_one(item)

    @staticmethod
    def _deliver_one(pair: tuple[Emit, Any]) -> None:
        emit, item = pair
        try:
            emit(item)
        except Exception:  # one receiver's failure must not keep the others' results from them
            log.exception("delivering a result to its request failed")


def _close_pipe(read_fd: int, write_fd: int) -> None:
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Handoff] = weakref.WeakKeyDictionary()


def for_running_loop() -> Handoff:
    """The running loop's Handoff, made on that loop's thread the first time one of its requests needs it."""
    loop = asyncio.get_running_loop()
    handoff = _BY_LOOP.get(loop)
    if handoff is None:
        handoff = _BY_LOOP[loop] = Handoff(loop)
    return handoff
