"""Who may call the API and how often: the API-key and rate-limit middleware that the settings ask for."""

from __future__ import annotations

from litestar.types import Middleware

from llm_inference.api.http.auth import api_key_middleware
from llm_inference.api.http.rate_limit import CallerPolicy, rate_limit_middleware
from llm_inference.auth_keys import ApiKeys
from llm_inference.settings import Settings
from llm_inference.state.limits import Limits


def is_limited(settings: Settings, keys: ApiKeys) -> bool:
    """Whether any caller may have a request or token limit: from the settings, or a key's own."""
    return bool(settings.rate_limit_per_minute or settings.tokens_per_minute or keys.has_own_limits)


def access_middleware(settings: Settings, keys: ApiKeys, limits: Limits) -> list[Middleware]:
    """In order: authentication first, so that the limits count per key rather than per address."""
    middleware: list[Middleware] = []
    if keys.enabled:
        middleware.append(api_key_middleware(keys, settings.auth_exempt_paths))
    if is_limited(settings, keys):
        policy = CallerPolicy(settings, keys)
        middleware.append(rate_limit_middleware(limits, policy, settings.auth_exempt_paths))
    return middleware
