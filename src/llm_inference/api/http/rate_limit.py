"""Per-caller limits on every guarded request: requests a minute (LLM_RATE_LIMIT_PER_MINUTE) and tokens a minute
(LLM_TOKENS_PER_MINUTE), per API key (a key may have its own in the key file) or per client address if no keys.

A request over either limit is refused with 429, Retry-After and the RateLimit headers. The tokens a request
used are charged to its caller as each generation ends, before the response's next message leaves, so the
caller's next request sees them. Where the buckets live (this process or the shared store) is state/limits.py's
business.
"""

from __future__ import annotations

import asyncio

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from llm_inference.api.http.auth import CALLER_KEY_ID, is_guarded
from llm_inference.api.http.errors import refuse
from llm_inference.auth_keys import ApiKeys
from llm_inference.errors import StateUnavailable
from llm_inference.service.usage import UsageMeter, current_usage
from llm_inference.settings import Settings
from llm_inference.state.limits import CallerLimits, Limits


def caller_of(scope: Scope) -> str:
    key_id = scope.get("state", {}).get(CALLER_KEY_ID)
    if key_id:
        return str(key_id)
    client = scope.get("client")
    return f"ip-{client[0]}" if client else "ip-unknown"


class CallerPolicy:
    """A caller's limits: its key's own where the key file gives them, else the settings'."""

    def __init__(self, settings: Settings, keys: ApiKeys) -> None:
        self.default = CallerLimits(settings.rate_limit_per_minute, settings.tokens_per_minute)
        self.keys = keys

    def limits(self, scope: Scope) -> CallerLimits:
        key_id = scope.get("state", {}).get(CALLER_KEY_ID)
        if not key_id:
            return self.default
        own = self.keys.limits(str(key_id))
        requests, tokens = self.default.requests_per_minute, self.default.tokens_per_minute
        requests_source, tokens_source = self.default.requests_source, self.default.tokens_source
        if own.rate_limit_per_minute is not None:
            requests, requests_source = own.rate_limit_per_minute, "this key's rate_limit_per_minute"
        if own.tokens_per_minute is not None:
            tokens, tokens_source = own.tokens_per_minute, "this key's tokens_per_minute"
        return CallerLimits(requests, tokens, requests_source, tokens_source)


def rate_limit_middleware(limits: Limits, policy: CallerPolicy, exempt_paths: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def middleware(app: ASGIApp) -> ASGIApp:
        async def limit(scope: Scope, receive: Receive, send: Send) -> None:
            caller_limits = policy.limits(scope) if is_guarded(scope, exempt_paths) else CallerLimits()
            if not caller_limits.any:
                await app(scope, receive, send)
                return
            caller = caller_of(scope)
            decision = await limits.admit(caller, caller_limits)
            if not decision.allowed:
                if decision.refused_by == "store":
                    status, error_type = StateUnavailable.status_code, StateUnavailable.type
                else:
                    status, error_type = 429, "rate_limited"
                await refuse(scope, receive, send, status, error_type, decision.message(), decision.headers())
                return
            meter = UsageMeter() if caller_limits.tokens_per_minute else None

            async def charge() -> None:
                if meter is not None and meter.pending:
                    await limits.charge(caller, caller_limits, meter.take())

            async def send_with_headers(message: Message) -> None:
                await charge()
                if message["type"] == "http.response.start":
                    headers = MutableScopeHeaders.from_message(message)
                    for name, value in decision.headers().items():
                        headers[name] = value
                await send(message)

            token = current_usage.set(meter)
            try:
                await app(scope, receive, send_with_headers)
            finally:
                current_usage.reset(token)
                if meter is not None and meter.pending:
                    # Tokens of a generation that ended after the last message (a client that left): charged
                    # even if this request is being cancelled.
                    await asyncio.shield(charge())

        return limit

    return middleware
