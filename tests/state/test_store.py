"""Reaching the store: a password from the URL or from a file (read again at each new connection), TLS verified
against a CA file, and settings that stop start-up with what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_inference.settings import SettingsError, load_settings, masked
from tests.polling import wait_until_async
from tests.state.conftest import Recorder, make_store
from tests.state_server import StateServer
from tests.test_server import _self_signed

PASSWORD = "correct horse battery staple"


async def test_a_password_from_the_url_or_from_a_file(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")  # as a Secret's file often ends
    with StateServer(tmp_path, password=PASSWORD) as server:
        in_url = server.url.replace("redis://", "redis://:correct%20horse%20battery%20staple@")
        for url, env in (
            (in_url, {}),
            (server.url, {"LLM_STATE_PASSWORD_FILE": str(password_file)}),
        ):
            store = make_store(url, **env)
            try:
                assert await store.ping() is None
            finally:
                await store.aclose()
        recorder = Recorder()
        store = make_store(server.url, recorder)
        try:
            problem = await store.ping()
            assert problem is not None and "did not answer" in problem and PASSWORD not in problem
            assert recorder.errors() == ["error"]  # the server refused: not a timeout, not a connection failure
        finally:
            await store.aclose()


async def test_a_rotated_password_file_is_read_at_the_next_connection(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("an old password")
    with StateServer(tmp_path, password=PASSWORD) as server:
        store = make_store(server.url, LLM_STATE_PASSWORD_FILE=str(password_file))
        try:
            assert await store.ping() is not None
            password_file.write_text(PASSWORD)
            # Once the backoff after the failure has passed, a new connection reads the new password.
            await wait_until_async(store.ping, until=lambda problem: problem is None, timeout=30, what="a ping")
        finally:
            await store.aclose()


async def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with StateServer(tmp_path, tls=(cert, key)) as server:
        assert server.url.startswith("rediss://")
        store = make_store(server.url, LLM_STATE_TLS_CA_FILE=str(cert))
        try:
            assert await store.ping() is None
        finally:
            await store.aclose()
        store = make_store(server.url)  # the system's CAs do not know this certificate
        try:
            assert await store.ping() is not None
        finally:
            await store.aclose()


@pytest.mark.parametrize(
    ("env", "variable", "rule"),
    [
        ({"LLM_STATE_URL": "http://valkey:6379"}, "LLM_STATE_URL", "a redis:// or rediss:// (TLS) URL"),
        ({"LLM_STATE_URL": "redis://valkey:99999"}, "LLM_STATE_URL", "redis://[[user]:password@]host[:port][/db]"),
        ({"LLM_STATE_URL": "redis://valkey/zero"}, "LLM_STATE_URL", "e.g. redis://valkey:6379/0"),
        ({"LLM_STATE_PASSWORD_FILE": "/run/secret"}, "LLM_STATE_PASSWORD_FILE", "unset while LLM_STATE_URL is unset"),
        (
            {"LLM_STATE_URL": "redis://valkey", "LLM_STATE_PASSWORD_FILE": "/nonexistent"},
            "LLM_STATE_PASSWORD_FILE",
            "a readable UTF-8 file holding the password (FileNotFoundError)",
        ),
        (
            {"LLM_STATE_URL": "redis://valkey", "LLM_STATE_TLS_CA_FILE": "/etc/hostname"},
            "LLM_STATE_TLS_CA_FILE",
            "a CA file for a rediss:// LLM_STATE_URL",
        ),
        ({"LLM_STATE_URL": "redis://v", "LLM_STATE_TIMEOUT_SECONDS": "0"}, "LLM_STATE_TIMEOUT_SECONDS", "> 0 <= 30"),
        ({"LLM_RATE_LIMIT_ON_STATE_FAILURE": "maybe"}, "LLM_RATE_LIMIT_ON_STATE_FAILURE", "one of closed | open"),
        ({"LLM_TOKENS_PER_MINUTE": "-1"}, "LLM_TOKENS_PER_MINUTE", "an integer >= 0"),
    ],
)
def test_bad_state_settings_stop_start_up(env: dict[str, str], variable: str, rule: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    [line] = caught.value.lines
    assert line.startswith(f"{variable}={env[variable]!r} is invalid: expected"), line
    assert rule in line, line


def test_a_password_in_the_url_is_never_shown() -> None:
    url = "redis://app:s3cret-pa55@valkey:6379/0"
    with pytest.raises(SettingsError) as caught:
        load_settings({"LLM_STATE_URL": url + "?x=1"})
    assert "s3cret-pa55" not in caught.value.lines[0] and "app:***@valkey:6379" in caught.value.lines[0]
    settings, _ = load_settings({"LLM_STATE_URL": url})
    assert masked(settings)["LLM_STATE_URL"] == "redis://app:***@valkey:6379/0"
