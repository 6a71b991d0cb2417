"""Notices a wedged engine: requests are waiting on it, yet its decode step counter stands still.

An engine can hang without dying (a stuck kernel, a deadlock in native code); its thread is alive and
check_health() passes, so only progress tells. vLLM's own /health keeps answering 200 in that state.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llm_inference.engines.base import Engine


class StallWatch:
    """Evaluated at each readiness probe: no thread, and a probe always sees the current state."""

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._engine: Engine | None = None
        self._steps: int | None = None
        self._since = 0.0  # when the counter was last seen to move, or the engine to be idle

    def stalled(self, engine: Engine) -> str | None:
        """Why the engine counts as wedged, or None."""
        steps = engine.decode_steps
        stats = engine.stats()
        busy = stats.running + stats.waiting
        now = self._clock()
        if engine is not self._engine or not busy or steps != self._steps:
            self._engine, self._steps, self._since = engine, steps, now
            return None
        idle_for = now - self._since
        if idle_for < self.stall_seconds:
            return None
        return (
            f"engine stalled: {busy} request(s) waiting and no decode progress for {idle_for:.1f}s "
            f"(LLM_ENGINE_STALL_SECONDS={self.stall_seconds:g})"
        )
