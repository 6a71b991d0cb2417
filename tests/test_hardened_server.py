"""A real Granian process: no secret or user text reaches its logs, per-address rate limits, bad TLS files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.api.sse import joined_text, parse_events
from tests.server import ServerProcess, run_cli
from tests.test_server import _self_signed

KEY = "k" * 24 + "-the-real-key"
WRONG_KEY = "x" * 24 + "-a-guessed-key"
# Distinctive text: if any of it shows up in a log line, the line carries user data.
PROMPT = "Quokka marmalade recipe number seventeen:"
SECRET_MESSAGE = "my locker code is 90210-zebra"


@pytest.mark.model
def test_no_key_token_prompt_or_completion_in_logs_or_error_bodies(tmp_path: Path) -> None:
    env = {"LLM_API_KEYS": KEY, "LLM_LOG_LEVEL": "DEBUG", "LLM_DEFAULT_MAX_TOKENS": "24"}
    auth = {"Authorization": f"Bearer {KEY}"}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            generated = client.post("/api/generate", json={"prompt": PROMPT, "temperature": 0}, headers=auth)
            assert generated.status_code == 200, generated.text
            completion = generated.json()["text"]
            chat = {"messages": [{"role": "user", "content": SECRET_MESSAGE}], "temperature": 0}
            streamed = client.post("/api/chat/stream", json=chat, headers=auth)
            stream_completion = joined_text(parse_events(streamed.text))
            errors = [
                client.post("/api/generate", json={"prompt": PROMPT}, headers={"Authorization": f"Bearer {WRONG_KEY}"}),
                client.post("/api/generate", json={"prompt": PROMPT + "\u0000"}, headers=auth),
                client.post("/api/generate", json={"prompt": PROMPT * 400}, headers=auth),
                client.post(
                    "/api/chat", json={"messages": [{"role": "wizard", "content": SECRET_MESSAGE}]}, headers=auth
                ),
                client.post("/api/generate", content=PROMPT.encode(), headers={**auth, "content-type": "text/plain"}),
            ]
        assert [e.status_code for e in errors] == [401, 422, 400, 422, 415]
        assert server.stop() == 0
    logs = server.logs()
    assert "model ready" in logs, "the log was captured"
    # The completions must be long enough for their absence from the logs to mean something.
    assert len(completion) >= 20 and len(stream_completion) >= 20, (completion, stream_completion)
    for secret in (
        KEY,
        WRONG_KEY,
        PROMPT,
        "Quokka",
        SECRET_MESSAGE,
        "90210",
        completion.strip(),
        stream_completion.strip(),
    ):
        assert secret not in logs, f"{secret!r} appears in the logs"
        for error in errors:
            assert secret not in error.text, f"{secret!r} appears in an error body: {error.text}"


@pytest.mark.model
def test_rate_limit_without_keys_is_per_client_address(tmp_path: Path) -> None:
    env = {"LLM_RATE_LIMIT_PER_MINUTE": "2", "LLM_ALLOWED_MODELS": str(tmp_path / "none.gguf")}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/live", 200)

        def from_address(address: str) -> list[int]:
            transport = httpx.HTTPTransport(local_address=address)
            with httpx.Client(transport=transport, timeout=10) as client:
                return [client.get(server.url + "/api/llms").status_code for _ in range(3)]

        assert from_address("127.0.0.1") == [200, 200, 429]
        assert from_address("127.0.0.2") == [200, 200, 429], "another address has its own budget"


def serve_exit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("serve", env)


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _unreadable(path: Path) -> Path:
    path.chmod(0)
    return path


@pytest.mark.parametrize(
    ("case", "variable", "says"),
    [
        ("missing", "LLM_TLS_KEY_PATH", "file missing or unreadable"),
        ("a directory", "LLM_TLS_KEY_PATH", "file missing or unreadable"),
        ("no read permission", "LLM_TLS_KEY_PATH", "file missing or unreadable"),
        ("not a PEM key", "LLM_TLS_KEY_PATH", "a PEM private key"),
        ("another certificate's key", "LLM_TLS_KEY_PATH", "matching LLM_TLS_CERT_PATH"),
        ("not a PEM certificate", "LLM_TLS_CERT_PATH", "a PEM certificate"),
    ],
)
def test_a_bad_tls_file_stops_start_up_with_exit_code_2(tmp_path: Path, case: str, variable: str, says: str) -> None:
    cert, key = _self_signed(tmp_path)
    if case == "no read permission" and os.geteuid() == 0:
        pytest.skip("root reads any file whatever its mode")
    bad = {
        "missing": lambda: tmp_path / "missing.key",
        "a directory": lambda: tmp_path,
        "no read permission": lambda: _unreadable(key),
        "not a PEM key": lambda: _written(tmp_path / "garbage.key", "not a key"),
        "another certificate's key": lambda: _self_signed(tmp_path / "other")[1],
        "not a PEM certificate": lambda: _written(tmp_path / "garbage.crt", "not a certificate"),
    }
    (tmp_path / "other").mkdir()
    paths = {"LLM_TLS_CERT_PATH": cert, "LLM_TLS_KEY_PATH": key}
    paths[variable] = bad[case]()
    result = serve_exit({"LLM_TLS_ENABLED": "true", **{k: str(v) for k, v in paths.items()}})
    assert result.returncode == 2, result.stderr
    assert f"{variable}='{paths[variable]}' is invalid" in result.stderr
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_masks_api_keys_but_not_the_key_file_path(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(KEY)
    result = run_cli("check-config", {"LLM_API_KEYS": WRONG_KEY, "LLM_API_KEYS_FILE": str(tmp_path / "keys")})
    assert result.returncode == 0, result.stderr
    assert WRONG_KEY not in result.stdout and KEY not in result.stdout
    assert '"LLM_API_KEYS": "***"' in result.stdout
    assert str(tmp_path / "keys") in result.stdout
