"""Who may call the API and how often: the API-key and rate-limit middleware that the settings ask for."""

from __future__ import annotations

from litestar.types import Middleware

from llm_inference.api.http.auth import api_key_middleware
from llm_inference.api.http.rate_limit import RateLimiter, rate_limit_middleware
from llm_inference.auth_keys import ApiKeys
from llm_inference.settings import Settings


def access_middleware(settings: Settings, keys: ApiKeys) -> list[Middleware]:
    """In order: authentication first, so that the rate limit counts per key rather than per address."""
    middleware: list[Middleware] = []
    if keys.enabled:
        middleware.append(api_key_middleware(keys, settings.auth_exempt_paths))
    if settings.rate_limit_per_minute:
        limiter = RateLimiter(settings.rate_limit_per_minute)
        middleware.append(rate_limit_middleware(limiter, settings.auth_exempt_paths))
    return middleware
