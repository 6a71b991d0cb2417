"""Parse the service's Server-Sent Events body into its JSON events."""

from __future__ import annotations

import json
from typing import Any


def parse_events(body: str) -> list[Any]:
    """Return the JSON events in order; the `[DONE]` terminator must be the last frame."""
    frames = [f for f in body.split("\n\n") if f.strip() and not f.startswith(":")]
    assert frames[-1] == "data: [DONE]", f"stream did not end with the terminator: {frames[-1:]}"
    events = []
    for frame in frames[:-1]:
        assert frame.startswith("data: "), frame
        events.append(json.loads(frame[len("data: ") :]))
    return events


def joined_text(events: list[Any]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")
