"""The shared store (LLM_STATE_URL, Valkey or Redis) behind redis-py's asyncio client: every call bounded in
time, failures counted, and after a failure no call tried again until a backoff has passed, so a store that is
gone costs each request nothing but a check of the clock."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import RedisError

from llm_inference.settings import Settings, read_secret_file, redacted_url

log = logging.getLogger(__name__)

T = TypeVar("T")

# After a failure, calls fail at once for this long, doubling with each failure in a row up to the cap; the first
# call after it tries the store again (and closes the gap at once if it answers).
FIRST_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 5.0


class StoreUnavailable(Exception):
    """The store did not answer in time, refused the call, or is inside its backoff after a failure."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class StoreObserver(Protocol):
    """What telemetry learns of the store (telemetry/state.py): each call, and each change of reachability."""

    def call(self, operation: str, seconds: float, error: str | None) -> None: ...

    def reachable(self, up: bool) -> None: ...

    def fallback(self, feature: str, outcome: str) -> None:
        """A feature went on without the store: `rate_limit` with `allowed` or `refused`, `tokens` `not_counted`."""


@dataclass(frozen=True)
class StoreConfig:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    password_file: str | None
    tls: bool
    tls_ca_file: str | None
    key_prefix: str
    timeout_seconds: float
    shown_url: str  # the URL without its password, for logs

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreConfig:
        assert settings.state_url is not None
        parts = urllib.parse.urlsplit(settings.state_url)
        database = parts.path.lstrip("/")
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(database) if database else 0,
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            password_file=settings.state_password_file,
            tls=parts.scheme == "rediss",
            tls_ca_file=settings.state_tls_ca_file,
            key_prefix=settings.state_key_prefix,
            timeout_seconds=settings.state_timeout_seconds,
            shown_url=redacted_url(settings.state_url),
        )


class _PasswordFile(CredentialProvider):
    """The password read from its file at each new connection: a rotated Secret is used from the next one on."""

    def __init__(self, username: str | None, path: str) -> None:
        self.username, self.path = username, path

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = read_secret_file(self.path)
        return (self.username, password) if self.username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return await asyncio.to_thread(self.get_credentials)


def _client(config: StoreConfig) -> redis.Redis:
    credentials: dict[str, Any] = {"username": config.username, "password": config.password}
    if config.password_file:
        credentials = {"credential_provider": _PasswordFile(config.username, config.password_file)}
    return redis.Redis(
        host=config.host,
        port=config.port,
        db=config.db,
        **credentials,
        ssl=config.tls,
        ssl_ca_certs=config.tls_ca_file,
        socket_timeout=config.timeout_seconds,
        socket_connect_timeout=config.timeout_seconds,
        # One retry, at once, on a fresh connection: a pooled connection the store closed (a restart) fails
        # its first command. Anything longer is the backoff's business, never a request's.
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
        client_name="llm-inference",
    )


def _error_kind(exc: BaseException) -> str:
    name = type(exc).__name__  # redis-py's TimeoutError and ConnectionError are not the built-in ones
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return "timeout"
    if isinstance(exc, OSError) or "Connection" in name:
        return "connection"
    return "error"


class StateStore:
    """One client (a connection pool) per process, shared by the rate limits and the sessions."""

    def __init__(
        self,
        config: StoreConfig,
        observer: StoreObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.observer = observer
        self.client = _client(config)
        self._clock = clock
        self._failures = 0  # in a row
        self._retry_at = 0.0  # no call before this (the store's clock is not ours: this is time.monotonic)
        self._up = True

    def key(self, *parts: str) -> str:
        return self.config.key_prefix + ":".join(parts)

    @property
    def up(self) -> bool:
        """Whether the last call succeeded (True before the first)."""
        return self._up

    def retry_after_seconds(self) -> int:
        """Whole seconds a client should wait before trying again: the rest of the backoff, at least 1."""
        return max(1, math.ceil(self._retry_at - self._clock()))

    async def call(self, operation: str, command: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """Run `command` on the client within the timeout; StoreUnavailable if the store is in its backoff,
        does not answer in time, or fails."""
        if self._failures and self._clock() < self._retry_at:
            if self.observer is not None:
                self.observer.call(operation, 0.0, "backoff")
            raise StoreUnavailable(
                f"the shared store at {self.config.shown_url} is unavailable", self.retry_after_seconds()
            )
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                result = await command(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(operation, time.perf_counter() - started, exc)
            raise StoreUnavailable(
                f"the shared store at {self.config.shown_url} did not answer ({_error_kind(exc)})",
                self.retry_after_seconds(),
            ) from exc
        self._succeeded(operation, time.perf_counter() - started)
        return result

    def _failed(self, operation: str, seconds: float, exc: BaseException) -> None:
        kind = _error_kind(exc)
        self._failures += 1
        backoff = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (self._failures - 1))
        self._retry_at = self._clock() + backoff * random.uniform(0.8, 1.0)  # jitter: replicas do not retry in step
        if self.observer is not None:
            self.observer.call(operation, seconds, kind)
        if self._up:
            self._up = False
            log.warning(
                "shared store unreachable; retrying with backoff",
                extra={"url": self.config.shown_url, "operation": operation, "error": f"{type(exc).__name__}: {exc}"},
            )
            if self.observer is not None:
                self.observer.reachable(False)

    def _succeeded(self, operation: str, seconds: float) -> None:
        self._failures = 0
        if self.observer is not None:
            self.observer.call(operation, seconds, None)
        if not self._up:
            self._up = True
            log.info("shared store reachable again", extra={"url": self.config.shown_url})
            if self.observer is not None:
                self.observer.reachable(True)

    async def ping(self) -> str | None:
        """None if the store answers now, else why not (readiness, start-up)."""
        try:
            await self.call("ping", lambda client: client.ping())
        except StoreUnavailable as exc:
            return str(exc)
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
