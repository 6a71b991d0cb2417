"""A real Granian process and pooled keep-alive clients: early refusals never cost a later request its answer.

Each round sends every kind of request the service refuses before reading the body (413 announced and
chunked, 401, 415, 404 on an unknown route, 429 from the rate limit) on one pooled client, each followed by a
normal generation; over HTTP/1.1, over TLS, and over HTTP/2 (which Granian serves with TLS).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import h2  # noqa: F401  (httpx's HTTP/2 needs it: fail here, loudly, rather than fall back to HTTP/1.1)
import httpx
import pytest

from tests.server import ServerProcess
from tests.test_server import _self_signed

pytestmark = pytest.mark.model

ROUNDS = 20
# Generous for a two-token generation; short enough that an upload stuck on a reset stream fails soon.
CLIENT_TIMEOUT_SECONDS = 20
RATE_LIMIT_PER_MINUTE = 20
# Normal traffic rotates over enough keys to stay under the rate limit; SPENT_KEY is used up first, so its
# requests are refused with 429 (or, when its bucket has refilled one token meanwhile, with 413).
KEYS = [f"keep-alive-test-key-{i:02d}" for i in range(40)]
SPENT_KEY = "keep-alive-test-key-spent"
MAX_REQUEST_BYTES = 65536
# Larger than HTTP/2's flow-control window, so that over h2 the client is still uploading when the refusal
# comes; within the server's drain bound (unread_body.DRAIN_LIMIT_BYTES).
OVERSIZED = json.dumps({"prompt": "x" * (2 * 1024 * 1024), "max_tokens": 2}).encode()
NORMAL = {"prompt": "Hi", "max_tokens": 2}


def _env(**extra: str) -> dict[str, str]:
    return {
        "LLM_API_KEYS": ",".join([*KEYS, SPENT_KEY]),
        "LLM_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
        "LLM_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        # One thread: a decode step never waits on a descheduled sibling thread on a busy test machine.
        "LLM_THREADS": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(_env(), log_path=tmp_path_factory.mktemp("plain") / "server.log") as server:
        server.wait_for("/health/ready", 200)
        yield server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ssl.SSLContext]]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(tmp)
    env = _env(LLM_TLS_ENABLED="true", LLM_TLS_CERT_PATH=str(cert), LLM_TLS_KEY_PATH=str(key))
    verify = ssl.create_default_context(cafile=str(cert))
    with ServerProcess(env, log_path=tmp / "server.log", scheme="https") as server:
        server.wait_for("/health/ready", 200, verify=verify)
        yield server, verify


def _chunks(body: bytes) -> Iterator[bytes]:
    """An iterator makes httpx send the body chunked: no Content-Length for the server to refuse up front."""
    for start in range(0, len(body), 16384):
        yield body[start : start + 16384]


def _refusals(key: str) -> list[tuple[str, set[int], dict[str, object]]]:
    auth = {"Authorization": f"Bearer {key}"}
    oversized = OVERSIZED
    json_type = {"content-type": "application/json"}
    return [
        ("/api/generate", {413}, {"content": oversized, "headers": {**auth, **json_type}}),
        ("/api/generate", {413}, {"content": _chunks(oversized), "headers": {**auth, **json_type}}),
        ("/api/generate", {401}, {"content": oversized, "headers": json_type}),
        ("/api/generate", {415}, {"content": b"Hi " * 20000, "headers": {**auth, "content-type": "text/plain"}}),
        ("/api/no-such-route", {404}, {"content": oversized, "headers": {**auth, **json_type}}),
        (
            "/api/generate",
            {429, 413},
            {"content": oversized, "headers": {"Authorization": f"Bearer {SPENT_KEY}", **json_type}},
        ),
    ]


def alternate(client: httpx.Client, http_version: str) -> None:
    """Every kind of early refusal, each followed by a normal request, ROUNDS times on one pooled client."""
    for _ in range(RATE_LIMIT_PER_MINUTE):
        client.get("/api/llms", headers={"Authorization": f"Bearer {SPENT_KEY}"})
    keys = iter(KEYS * ROUNDS)
    statuses: list[int] = []
    for round_ in range(ROUNDS):
        for path, expected, request in _refusals(next(keys)):
            where = f"round {round_}, {path} expecting {sorted(expected)}"
            try:
                response = client.post(path, **request)  # type: ignore[arg-type]
            except httpx.TransportError as exc:  # its body was not drained: the client lost the answer
                raise AssertionError(f"{where}: the refused request got no answer: {exc!r}") from exc
            assert response.status_code in expected, (where, response.status_code, response.text)
            if http_version == "HTTP/1.1":
                assert response.headers.get("connection") == "close", (where, response.headers)
            statuses.append(response.status_code)
            try:
                auth = {"Authorization": f"Bearer {next(keys)}"}
                normal = client.post("/api/generate", json=NORMAL, headers=auth)
            except httpx.TransportError as exc:
                raise AssertionError(f"{where}: the normal request after it was lost: {exc!r}") from exc
            assert normal.status_code == 200, normal.text
            assert normal.http_version == http_version
            assert "close" not in normal.headers.get("connection", ""), "a normal answer keeps its connection"
    assert statuses.count(429) >= ROUNDS // 2, "the rate limit's refusals were exercised"


def test_http1_keep_alive_survives_early_refusals(plain_server: ServerProcess) -> None:
    with httpx.Client(base_url=plain_server.url, timeout=CLIENT_TIMEOUT_SECONDS) as client:
        alternate(client, "HTTP/1.1")
    assert "Traceback" not in plain_server.logs(), "draining refused bodies leaves no error behind"


def test_http1_over_tls_keep_alive_survives_early_refusals(
    tls_server: tuple[ServerProcess, ssl.SSLContext],
) -> None:
    server, verify = tls_server
    with httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT_SECONDS, verify=verify) as client:
        alternate(client, "HTTP/1.1")


def test_http2_connection_survives_early_refusals(tls_server: tuple[ServerProcess, ssl.SSLContext]) -> None:
    server, verify = tls_server
    # http1=False: the client offers only h2, so the test cannot pass on a fallback to HTTP/1.1.
    h2_only = {"http2": True, "http1": False}
    with httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT_SECONDS, verify=verify, **h2_only) as c:
        alternate(c, "HTTP/2")


def test_a_body_past_the_drain_bound_still_costs_no_later_request(plain_server: ServerProcess) -> None:
    """Past the drain bound the server closes the connection with the body unread: the refused upload may
    fail, but the client was told to close, so the next request goes on a new connection and is answered."""
    auth = {"Authorization": f"Bearer {KEYS[0]}"}
    with httpx.Client(base_url=plain_server.url, timeout=CLIENT_TIMEOUT_SECONDS) as client:
        for _ in range(3):
            try:
                refused = client.post("/api/generate", content=b"x" * (24 * 1024 * 1024), headers=auth)
                assert refused.status_code == 413 and refused.headers["connection"] == "close"
            except httpx.TransportError:
                pass  # the connection was reset under an upload the server would not read: allowed
            assert client.get("/api/llms", headers=auth).status_code == 200
