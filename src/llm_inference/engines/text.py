"""Text plumbing shared by engines: incremental UTF-8 decoding and stop sequences across token boundaries."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class IncrementalText:
    """Turns token byte pieces into text, holding back an incomplete UTF-8 sequence until it completes."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Finds stop sequences in streamed text, even when one spans several tokens.

    Text that could still be the start of a stop sequence is held back, so a client never receives part
    of a stop string; the stop string itself is never emitted.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Feed new text; return (text safe to emit, whether a stop sequence was found)."""
        if not self._stops:
            return text, False
        self._pending += text
        hits = [(i, s) for s in self._stops if (i := self._pending.find(s)) >= 0]
        if hits:
            index = min(i for i, _ in hits)
            emitted, self._pending = self._pending[:index], ""
            return emitted, True
        keep = self._held_back_length()
        cut = len(self._pending) - keep
        emitted, self._pending = self._pending[:cut], self._pending[cut:]
        return emitted, False

    def _held_back_length(self) -> int:
        for size in range(min(self._longest - 1, len(self._pending)), 0, -1):
            tail = self._pending[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0

    def flush(self) -> str:
        """At the end of a generation without a stop: release what was held back."""
        text, self._pending = self._pending, ""
        return text
