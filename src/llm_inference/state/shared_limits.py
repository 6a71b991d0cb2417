"""The per-caller buckets of state/limits.py in the shared store, so every replica and worker counts against one
limit. Each decision is one Lua script, which the server runs atomically on its own clock: two replicas cannot
both take a caller's last request, and their clocks need not agree."""

from __future__ import annotations

import logging
from typing import Any

from llm_inference.state.limits import WINDOW_SECONDS, CallerLimits, Decision
from llm_inference.state.store import StateStore, StoreUnavailable

log = logging.getLogger(__name__)

# A bucket is a hash {level, at}: its level at `at` (the server's clock, ms). Missing, it is full. It expires once
# it would have refilled completely, so an idle caller costs the store nothing.
_BUCKETS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[3])

local function level(key, capacity)
  local saved = redis.call('HMGET', key, 'level', 'at')
  if not saved[1] then return capacity end
  local value = tonumber(saved[1]) + (now - tonumber(saved[2])) * capacity / window
  if value > capacity then return capacity end
  return value
end

local function save(key, value, capacity)
  redis.call('HSET', key, 'level', tostring(value), 'at', now)
  redis.call('PEXPIRE', key, math.ceil((capacity - value) * window / capacity) + 1000)
end
"""

# KEYS: the caller's request bucket, its token bucket. ARGV: requests a window, tokens a window (0: no such
# limit), the window in ms. Returns {allowed, request level before this request, token level} (levels as text:
# Lua numbers would come back truncated to integers; "none" where there is no such limit).
ADMIT = (
    _BUCKETS
    + """
local requests, tokens = tonumber(ARGV[1]), tonumber(ARGV[2])
local request_level, token_level = 'none', 'none'
local allowed = 1
if tokens > 0 then
  token_level = level(KEYS[2], tokens)
  if token_level < 1 then allowed = 0 end
end
if requests > 0 then
  request_level = level(KEYS[1], requests)
  if request_level < 1 then allowed = 0 end
  local after = request_level
  if allowed == 1 then after = request_level - 1 end
  save(KEYS[1], after, requests)
end
return {allowed, tostring(request_level), tostring(token_level)}
"""
)

# KEYS: the caller's token bucket. ARGV: tokens a window, the tokens used, the window in ms. The level may go
# below zero: the caller waits until the debt is paid back.
CHARGE = (
    _BUCKETS
    + """
local capacity, used = tonumber(ARGV[1]), tonumber(ARGV[2])
local value = level(KEYS[1], capacity) - used
save(KEYS[1], value, capacity)
return tostring(value)
"""
)


def _level(text: str) -> float | None:
    return None if text == "none" else float(text)


class SharedLimits:
    """Limits counted in the store. When it does not answer, `fail_open` lets requests through (with a warning
    and llm_state_fallbacks{feature="rate_limit",outcome="allowed"}) or refuses them with 503."""

    def __init__(self, store: StateStore, *, fail_open: bool = True) -> None:
        self.store, self.fail_open = store, fail_open
        self._admit = store.client.register_script(ADMIT)
        self._charge = store.client.register_script(CHARGE)
        self._warned = False  # once per outage, not once per request

    def _keys(self, caller: str) -> list[str]:
        return [self.store.key("limits", caller, "requests"), self.store.key("limits", caller, "tokens")]

    async def admit(self, caller: str, limits: CallerLimits) -> Decision:
        args = [limits.requests_per_minute, limits.tokens_per_minute, WINDOW_SECONDS * 1000]
        try:
            allowed, requests, tokens = await self.store.call(
                "rate_limit", lambda client: self._admit(keys=self._keys(caller), args=args, client=client)
            )
        except StoreUnavailable as exc:
            return self._without_store(limits, exc)
        self._warned = False
        return Decision.from_levels(limits, _level(requests), _level(tokens), allowed=bool(allowed))

    def _without_store(self, limits: CallerLimits, exc: StoreUnavailable) -> Decision:
        outcome = "allowed" if self.fail_open else "refused"
        if self.store.observer is not None:
            self.store.observer.fallback("rate_limit", outcome)
        if not self._warned:
            self._warned = True
            log.warning(
                "rate limits not enforced while the shared store does not answer"
                if self.fail_open
                else "requests refused while the shared store does not answer",
                extra={"policy": "open" if self.fail_open else "closed", "error": str(exc)},
            )
        if self.fail_open:
            return Decision(True, limits)
        return Decision.unavailable(limits, exc.retry_after_seconds)

    async def charge(self, caller: str, limits: CallerLimits, tokens: int) -> None:
        if not limits.tokens_per_minute or tokens <= 0:
            return
        key = self._keys(caller)[1]
        args: list[Any] = [limits.tokens_per_minute, tokens, WINDOW_SECONDS * 1000]
        try:
            await self.store.call("token_charge", lambda client: self._charge(keys=[key], args=args, client=client))
        except StoreUnavailable as exc:
            if self.store.observer is not None:
                self.store.observer.fallback("tokens", "not_counted")
            log.warning(
                "tokens not counted: the shared store does not answer", extra={"tokens": tokens, "error": str(exc)}
            )
