"""Per-caller limits: requests a minute (a token bucket: a burst of that many, refilled evenly over a minute) and
tokens a minute (a budget refilled the same way, spent by what requests used when they finish), behind one small
protocol; LocalLimits keeps them in this process (state/shared_limits.py in the shared store).

Litestar's own RateLimitMiddleware keeps a list of every request time per client and sends no Retry-After; a
bucket is two numbers per caller and knows exactly when the next request will be allowed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

WINDOW_SECONDS = 60
# Beyond this many callers, buckets that have refilled completely are forgotten (they hold no state).
MAX_IDLE_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class CallerLimits:
    """One caller's limits a minute; 0 is no limit. `source` names where each came from, for messages."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    requests_source: str = "LLM_RATE_LIMIT_PER_MINUTE"
    tokens_source: str = "LLM_TOKENS_PER_MINUTE"

    @property
    def any(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may go ahead, and what the RateLimit headers say about the caller's buckets.

    `requests_level` / `tokens_level`: the buckets' levels after this request was counted (None where the caller
    has no such limit, or the store could not say). `refused_by`: requests | tokens | store (the shared store did
    not answer and LLM_RATE_LIMIT_ON_STATE_FAILURE=closed)."""

    allowed: bool
    limits: CallerLimits
    requests_level: float | None = None
    tokens_level: float | None = None
    refused_by: Literal["requests", "tokens", "store"] | None = None
    retry_after_seconds: int = 0  # until the request would be allowed (0 when allowed)

    @classmethod
    def from_levels(
        cls,
        limits: CallerLimits,
        requests_level: float | None,
        tokens_level: float | None,
        allowed: bool | None = None,
    ) -> Decision:
        """The decision that the levels before this request imply (or `allowed`, where the shared store's script
        has decided: levels come back from it as text, rounded), the request taken from its bucket if allowed."""
        waits: dict[Literal["requests", "tokens"], int] = {}
        if tokens_level is not None and tokens_level < 1:
            waits["tokens"] = _seconds_until(tokens_level, 1, limits.tokens_per_minute)
        if requests_level is not None and requests_level < 1:
            waits["requests"] = _seconds_until(requests_level, 1, limits.requests_per_minute)
        if allowed if allowed is not None else not waits:
            if requests_level is not None:
                requests_level = max(0.0, requests_level - 1)
            return cls(True, limits, requests_level, tokens_level)
        if not waits:  # refused at a level that rounds to 1: the next token is moments away
            waits["requests" if requests_level is not None else "tokens"] = 1
        refused_by = max(waits, key=lambda kind: waits[kind])
        return cls(False, limits, requests_level, tokens_level, refused_by, max(1, waits[refused_by]))

    @classmethod
    def unavailable(cls, limits: CallerLimits, retry_after_seconds: int) -> Decision:
        return cls(False, limits, refused_by="store", retry_after_seconds=retry_after_seconds)

    def headers(self) -> dict[str, str]:
        # draft-ietf-httpapi-ratelimit-headers, in the widely deployed RateLimit-Limit/-Remaining/-Reset form, for
        # requests; the token budget in the X-RateLimit-*-Tokens headers that OpenAI's API sends and clients read.
        headers: dict[str, str] = {}
        if self.requests_level is not None:
            limit = self.limits.requests_per_minute
            headers |= {
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": str(max(0, math.floor(self.requests_level))),
                "RateLimit-Reset": str(_seconds_until(self.requests_level, limit, limit)),
                "RateLimit-Policy": f"{limit};w={WINDOW_SECONDS}",
            }
        if self.tokens_level is not None:
            limit = self.limits.tokens_per_minute
            headers |= {
                "X-RateLimit-Limit-Tokens": str(limit),
                "X-RateLimit-Remaining-Tokens": str(max(0, math.floor(self.tokens_level))),
                "X-RateLimit-Reset-Tokens": f"{_seconds_until(self.tokens_level, limit, limit)}s",
            }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers

    def message(self) -> str:
        """Why the request was refused, naming the limit and when to retry."""
        retry = f"retry in {self.retry_after_seconds}s"
        if self.refused_by == "tokens":
            name, limit = self.limits.tokens_source, self.limits.tokens_per_minute
            return f"more than {name}={limit} tokens (prompt + completion) in a minute; {retry}"
        if self.refused_by == "requests":
            name, limit = self.limits.requests_source, self.limits.requests_per_minute
            return f"more than {name}={limit} requests in a minute; {retry}"
        return (
            "rate limits cannot be checked while the shared store (LLM_STATE_URL) does not answer, and "
            f"LLM_RATE_LIMIT_ON_STATE_FAILURE=closed refuses requests meanwhile; {retry}"
        )


def _seconds_until(level: float, wanted: float, per_minute: int) -> int:
    """Whole seconds until a bucket refilled at `per_minute` a minute holds `wanted`."""
    return max(0, math.ceil((wanted - level) * WINDOW_SECONDS / per_minute))


def refilled(level: float, elapsed_seconds: float, capacity: int) -> float:
    return min(float(capacity), level + elapsed_seconds * capacity / WINDOW_SECONDS)


class Limits(Protocol):
    """Where the buckets live: this process (LocalLimits) or the shared store (SharedLimits)."""

    async def admit(self, caller: str, limits: CallerLimits) -> Decision:
        """Count one request of `caller` against its request limit, if its buckets allow it."""
        ...

    async def charge(self, caller: str, limits: CallerLimits, tokens: int) -> None:
        """Spend `tokens` (a finished request's prompt + completion) from the caller's token budget. The budget
        may go below zero: the caller's next request waits until it is paid back."""
        ...


class LocalLimits:
    """Buckets in this process's memory: each worker process of each replica counts on its own."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # caller -> (level, when) for requests and for tokens
        self._buckets: dict[str, dict[str, tuple[float, float]]] = {"requests": {}, "tokens": {}}

    def _level(self, kind: str, caller: str, capacity: int, now: float) -> float:
        level, when = self._buckets[kind].get(caller, (float(capacity), now))
        return refilled(level, now - when, capacity)

    async def admit(self, caller: str, limits: CallerLimits) -> Decision:
        now = self._clock()
        tokens = self._level("tokens", caller, limits.tokens_per_minute, now) if limits.tokens_per_minute else None
        requests = None
        if limits.requests_per_minute:
            requests = self._level("requests", caller, limits.requests_per_minute, now)
        decision = Decision.from_levels(limits, requests, tokens)
        if decision.requests_level is not None:
            self._save("requests", caller, decision.requests_level, now)
        return decision

    async def charge(self, caller: str, limits: CallerLimits, tokens: int) -> None:
        if not limits.tokens_per_minute:
            return
        now = self._clock()
        self._save("tokens", caller, self._level("tokens", caller, limits.tokens_per_minute, now) - tokens, now)

    def _save(self, kind: str, caller: str, level: float, now: float) -> None:
        buckets = self._buckets[kind]
        buckets[caller] = (level, now)
        if len(buckets) > MAX_IDLE_BUCKETS:
            self._forget_full(buckets, now)

    def _forget_full(self, buckets: dict[str, tuple[float, float]], now: float) -> None:
        # A bucket that has had a minute to refill is full whatever its capacity; a spent one may still owe.
        for caller in [c for c, (level, when) in buckets.items() if level >= 0 and now - when >= WINDOW_SECONDS]:
            del buckets[caller]

    def __len__(self) -> int:
        return sum(len(buckets) for buckets in self._buckets.values())
