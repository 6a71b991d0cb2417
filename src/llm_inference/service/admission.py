"""Bounds requests in flight (running + queued), so overload answers 429 at once instead of piling up."""

from __future__ import annotations

from llm_inference.errors import Overloaded


class Slot:
    """One admitted request's place. It travels with the request (a stream owns it) and is released once."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            self._admission.in_flight -= 1
            self._admission = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class Admission:
    def __init__(self, running: int, queued: int) -> None:
        self.capacity = running + queued
        self.in_flight = 0

    def admit(self) -> Slot:
        """Take a slot, or raise Overloaded (429) when every slot is taken."""
        if self.in_flight >= self.capacity:
            raise Overloaded(
                f"{self.in_flight} requests in flight, the limit is {self.capacity} "
                "(LLM_MAX_CONCURRENT_REQUESTS + LLM_MAX_QUEUED_REQUESTS); retry later"
            )
        self.in_flight += 1
        return Slot(self)
