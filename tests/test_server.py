"""The service as users run it: a real Granian process, its probes, hub downloads, TLS and SIGTERM."""

from __future__ import annotations

import datetime
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fake_hub import FakeHub
from tests.polling import wait_until
from tests.server import ServerProcess

pytestmark = pytest.mark.model


def test_live_during_a_slow_download_ready_only_after_load(fake_hub: FakeHub, tmp_path: Path) -> None:
    env = {"LLM_ALLOWED_MODELS": fake_hub.spec, **fake_hub.environment(tmp_path / "hf")}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/live", 200)
        # The registry starts the load in the background: downloading once the hub has been asked.
        model = wait_until(
            lambda: httpx.get(server.url + "/api/llms").json()["models"][0],
            until=lambda model: model["state"] == "downloading",
            timeout=60,
            what="the model to be downloading",
        )
        assert model["state"] == "downloading" and model["download"]["bytes_done"] == 0, model
        not_ready = httpx.get(server.url + "/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json() == {"status": "not_ready", "reason": f"downloading ({fake_hub.spec})"}
        # A request meanwhile waits for the load (up to LLM_REQUEST_TIMEOUT_SECONDS) and is answered.
        with ThreadPoolExecutor(1) as pool:
            body = {"prompt": "Hi", "max_tokens": 4}
            waiting = pool.submit(httpx.post, server.url + "/api/generate", json=body, timeout=120)
            time.sleep(0.5)
            assert not waiting.done()
            fake_hub.release.set()
            server.wait_for("/health/ready", 200)
            answer = waiting.result()
        assert answer.status_code == 200 and answer.json()["model"] == fake_hub.spec
        assert (tmp_path / "hf" / "hub").is_dir(), "the download must land in HF_HOME"

        # A model outside the allow-list is refused without the hub being asked for anything.
        asked_before = list(fake_hub.requests)
        unknown = httpx.post(server.url + "/api/generate", json={"prompt": "Hi", "model": "evil/model:x.gguf"})
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "model_not_found"
        assert fake_hub.requests == asked_before
        assert not any("evil" in request for request in fake_hub.requests), fake_hub.requests
        assert server.stop() == 0


def test_a_model_that_fails_to_load_turns_readiness_503_with_the_reason(tmp_path: Path) -> None:
    env = {"LLM_ALLOWED_MODELS": str(tmp_path / "missing.gguf")}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/live", 200)
        # 503 while the model loads, then 503 because its load failed: waited for past "loading".
        response = wait_until(
            lambda: server.wait_for("/health/ready", 503),
            until=lambda response: not response.json()["reason"].startswith("loading"),
            timeout=120,
            what="readiness to give a reason other than loading",
            details=lambda: f"server log:\n{server.logs()}",
        )
        assert response.json()["reason"].startswith(f"failed ({env['LLM_ALLOWED_MODELS']}): FileNotFoundError")
        llms = httpx.get(server.url + "/api/llms").json()["models"]
        assert llms[0]["state"] == "failed"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_serves_https_to_a_verifying_client(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    env = {"LLM_TLS_ENABLED": "true", "LLM_TLS_CERT_PATH": str(cert), "LLM_TLS_KEY_PATH": str(key)}
    verify = ssl.create_default_context(cafile=str(cert))
    with ServerProcess(env, log_path=tmp_path / "server.log", scheme="https") as server:
        server.wait_for("/health/ready", 200, verify=verify)
        answer = httpx.post(
            server.url + "/api/generate", json={"prompt": "Hi", "max_tokens": 3}, verify=verify, timeout=60
        )
        assert answer.status_code == 200
        # plain HTTP to the TLS port does not get an answer
        try:
            plain = httpx.get(f"http://127.0.0.1:{server.port}/health/live", timeout=5)
            assert plain.status_code >= 400
        except httpx.TransportError:
            pass
