"""Debian's chromium, driven by Playwright (never a browser Playwright downloads), against real Granian processes.

Where the browser cannot start the tests skip with the reason, unless LLM_TEST_REQUIRE_BROWSER=1 (set by
`make test`, which CI runs): then they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import ServerProcess

CHROMIUM = os.environ.get("LLM_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless on a closed network: without these chromium spends minutes reaching Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI and in containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
API_KEY = "playground-test-key-0123456789"
# A reply long enough to press Stop in the middle of (the model may still end it early: see the test).
UI_SERVER_ENV = {"LLM_MAX_TOKENS_LIMIT": "1000", "LLM_DEFAULT_MAX_TOKENS": "64"}


def _no_browser(reason: str) -> None:
    if os.environ.get("LLM_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"LLM_TEST_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# Per module: Playwright's sync API keeps its event loop running in this thread while it is alive, which
# pytest-asyncio's tests cannot share; closed at the end of each module, it leaves no loop behind.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        _no_browser(f"playwright is not installed ({exc})")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _no_browser(f"{CHROMIUM} is missing (`make browser` installs Debian's chromium)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        except Error as exc:
            _no_browser(f"chromium at {CHROMIUM} did not start: {exc.message.splitlines()[0]}")
        yield launched
        launched.close()


def _serve(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp(name) / "server.log"
    with ServerProcess(env={**UI_SERVER_ENV, **env}, log_path=log) as server:
        server.wait_for("/health/ready", 200, timeout=180)
        yield server


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(tmp_path_factory, "ui", {})


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(tmp_path_factory, "ui-keys", {"LLM_API_KEYS": API_KEY})
