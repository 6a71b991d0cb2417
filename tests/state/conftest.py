"""One real Valkey/Redis server for the shared-state unit tests (each test keeps to its own key prefix), and
stores built from LLM_* settings as the app builds them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from llm_inference.settings import load_settings
from llm_inference.state.store import StateStore, StoreConfig
from tests.state_server import StateServer


@dataclass
class Recorder:
    """A StoreObserver that keeps what it is told."""

    calls: list[tuple[str, str | None]] = field(default_factory=list)  # (operation, error)
    reachability: list[bool] = field(default_factory=list)
    fallbacks: list[tuple[str, str]] = field(default_factory=list)

    def call(self, operation: str, seconds: float, error: str | None) -> None:
        self.calls.append((operation, error))

    def reachable(self, up: bool) -> None:
        self.reachability.append(up)

    def fallback(self, feature: str, outcome: str) -> None:
        self.fallbacks.append((feature, outcome))

    def errors(self) -> list[str | None]:
        return [error for _, error in self.calls if error is not None]


def make_store(url: str, observer: Recorder | None = None, **env: str) -> StateStore:
    """A store as create_app builds it from LLM_STATE_URL and the other LLM_STATE_* settings, under a key prefix
    of its own unless one is given."""
    settings, _ = load_settings({"LLM_STATE_URL": url, "LLM_STATE_KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}:", **env})
    return StateStore(StoreConfig.from_settings(settings), observer=observer)


@pytest.fixture(scope="session")
def state_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateServer]:
    with StateServer(tmp_path_factory.mktemp("state-server")) as server:
        yield server


@pytest.fixture
async def store(state_server: StateServer) -> AsyncIterator[StateStore]:
    store = make_store(state_server.url, Recorder())
    yield store
    await store.aclose()
