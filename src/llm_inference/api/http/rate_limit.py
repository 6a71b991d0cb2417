"""Per-caller rate limit (LLM_RATE_LIMIT_PER_MINUTE): a token bucket per API key, or per client IP if no keys.

Litestar's own RateLimitMiddleware keeps a list of every request time per client and sends no Retry-After;
a token bucket is two numbers per caller and knows exactly when the next request will be allowed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from llm_inference.api.http.auth import CALLER_KEY_ID, is_guarded
from llm_inference.api.http.errors import refuse

WINDOW_SECONDS = 60
# Beyond this many callers, buckets that have refilled completely are forgotten (they hold no state).
MAX_IDLE_BUCKETS = 10_000


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after_seconds: int  # until one more request is allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        # draft-ietf-httpapi-ratelimit-headers, in the widely deployed RateLimit-Limit/-Remaining/-Reset form.
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.limit};w={WINDOW_SECONDS}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


class RateLimiter:
    """`per_minute` requests per caller: a burst of that many, refilled evenly over a minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = per_minute
        self._rate = per_minute / WINDOW_SECONDS  # tokens per second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when)

    def _tokens(self, caller: str, now: float) -> float:
        tokens, when = self._buckets.get(caller, (float(self.limit), now))
        return min(float(self.limit), tokens + (now - when) * self._rate)

    def take(self, caller: str) -> Decision:
        now = self._clock()
        tokens = self._tokens(caller, now)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[caller] = (tokens, now)
        if len(self._buckets) > MAX_IDLE_BUCKETS:
            self._forget_full(now)
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=int(tokens),
            reset_seconds=math.ceil((self.limit - tokens) / self._rate),
            retry_after_seconds=0 if allowed else max(1, math.ceil((1 - tokens) / self._rate)),
        )

    def _forget_full(self, now: float) -> None:
        for caller in [c for c in self._buckets if self._tokens(c, now) >= self.limit]:
            del self._buckets[caller]


def caller_of(scope: Scope) -> str:
    key_id = scope.get("state", {}).get(CALLER_KEY_ID)
    if key_id:
        return str(key_id)
    client = scope.get("client")
    return f"ip-{client[0]}" if client else "ip-unknown"


def rate_limit_middleware(limiter: RateLimiter, exempt_paths: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def middleware(app: ASGIApp) -> ASGIApp:
        async def limit(scope: Scope, receive: Receive, send: Send) -> None:
            if not is_guarded(scope, exempt_paths):
                await app(scope, receive, send)
                return
            decision = limiter.take(caller_of(scope))
            if not decision.allowed:
                message = (
                    f"more than LLM_RATE_LIMIT_PER_MINUTE={limiter.limit} requests in a minute; "
                    f"retry in {decision.retry_after_seconds}s"
                )
                await refuse(scope, receive, send, 429, "rate_limited", message, decision.headers())
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = MutableScopeHeaders.from_message(message)
                    for name, value in decision.headers().items():
                        headers[name] = value
                await send(message)

            await app(scope, receive, send_with_headers)

        return limit

    return middleware
