"""The rendered Deployment, run: a real Granian process with exactly the chart's environment, port and probes.

The only changes from the pod are where files live (the model cache and the TLS Secret map to temporary
directories) and who probes: a stand-in for the kubelet that runs each rendered probe as the kubelet does
(HTTP GET on the named port, the probe's scheme and timeout, success = 200..399, certificates not verified).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.sse import parse_events
from tests.deploy.chart import container_env, helm_test_pod, one, port_number, render, server_container
from tests.fake_hub import FakeHub
from tests.polling import wait_until
from tests.server import ServerProcess, free_port
from tests.test_server import _self_signed

pytestmark = pytest.mark.model


class Kubelet:
    def __init__(self, container: dict[str, Any]) -> None:
        self.container = container

    def probe(self, name: str) -> bool:
        spec = self.container[name]
        get = spec["httpGet"]
        url = f"{get['scheme'].lower()}://127.0.0.1:{port_number(self.container, get['port'])}{get['path']}"
        try:
            response = httpx.get(url, timeout=spec["timeoutSeconds"], verify=False)
        except httpx.TransportError:
            return False
        return 200 <= response.status_code < 400

    def wait_until(self, name: str, result: bool, timeout: float) -> float:
        """Seconds until the probe `name` gives `result`."""
        started = time.monotonic()
        wait_until(
            lambda: self.probe(name),
            until=lambda outcome: outcome is result,
            timeout=timeout,
            what=f"{name} to turn {result}",
            interval=0.1,
        )
        return time.monotonic() - started

    def budget_seconds(self, name: str) -> float:
        spec = self.container[name]
        return spec["periodSeconds"] * spec["failureThreshold"]


def pod_environment(manifests: dict[str, Any], container: dict[str, Any], files: dict[str, Path]) -> dict[str, str]:
    """The container's environment, with pod paths (mount points) replaced by local ones."""
    env = container_env(manifests, container)
    for name, value in env.items():
        for pod_path, local in files.items():
            if value == pod_path or value.startswith(pod_path + "/"):
                env[name] = str(local) + value[len(pod_path) :]
    return env


def run_helm_test(manifests: dict[str, Any], base_url: str) -> subprocess.CompletedProcess[str]:
    """Run the `helm test` hook pod's own script and environment against the local server."""
    [container] = helm_test_pod(manifests)["spec"]["containers"]
    assert container["command"] == ["python3", "-c"]
    env = {e["name"]: e["value"] for e in container["env"]} | {"BASE_URL": base_url, "TIMEOUT_SECONDS": "120"}
    return subprocess.run(
        [sys.executable, "-c", container["args"][0]], env=env, capture_output=True, text=True, timeout=180
    )


def test_probes_through_loading_serving_and_draining(fake_hub: FakeHub, tmp_path: Path) -> None:
    values = {
        "containerPort": free_port(),
        # A long drain, so the stream below finishes even on a loaded machine.
        "config": {
            "LLM_ALLOWED_MODELS": fake_hub.spec,
            "LLM_CONTEXT_LENGTH": 1024,
            "LLM_SHUTDOWN_GRACE_SECONDS": 300,
        },
        "env": fake_hub.environment(),  # HF_HOME: the chart's model cache
    }
    manifests = render(values)
    container = server_container(manifests)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = pod_environment(manifests, container, {mounts["model-cache"]: tmp_path / "model-cache"})
    port = port_number(container, "http")
    assert env["LLM_INFERENCE_PORT"] == str(port) and container["command"] == ["llm-inference", "serve"]
    kubelet = Kubelet(container)

    with ServerProcess(env, log_path=tmp_path / "server.log", port=port) as server:
        # Loading (the download is held back): alive, not started, not ready, so no traffic and no restart.
        kubelet.wait_until("livenessProbe", True, timeout=60)
        assert not kubelet.probe("startupProbe")
        assert not kubelet.probe("readinessProbe")

        fake_hub.release.set()
        took = kubelet.wait_until("startupProbe", True, timeout=120)
        assert took < kubelet.budget_seconds("startupProbe")
        assert kubelet.probe("readinessProbe") and kubelet.probe("livenessProbe")

        helm_test = run_helm_test(manifests, server.url)
        assert helm_test.returncode == 0, helm_test.stdout + helm_test.stderr
        assert "generated" in helm_test.stdout

        # Pod deletion: after preStop, SIGTERM. Readiness fails at once, liveness holds (no restart)
        # while a stream in flight finishes, and the process exits 0 within the pod's grace period.
        stream: dict[str, Any] = {}
        first_delta = threading.Event()

        def read_stream() -> None:
            body = ""
            with httpx.stream(
                "POST",
                server.url + "/api/generate/stream",
                timeout=120,
                json={"prompt": "Count from 1 to 200: 1, 2,", "max_tokens": 200, "temperature": 0},
            ) as response:
                for text in response.iter_text():
                    body += text
                    first_delta.set()
            stream["body"] = body

        reader = threading.Thread(target=read_stream)
        reader.start()
        assert first_delta.wait(60)
        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        signalled = time.monotonic()
        kubelet.wait_until("readinessProbe", False, timeout=2)
        assert reader.is_alive(), "the stream should still be running"
        assert kubelet.probe("livenessProbe")
        reader.join(300)
        events = parse_events(stream["body"])
        assert events[-1]["type"] == "done" and events[-1]["usage"]["completion_tokens"] == 200
        pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert server.process.wait(pod["terminationGracePeriodSeconds"] - pre_stop) == 0  # type: ignore[union-attr]
        assert time.monotonic() - signalled < pod["terminationGracePeriodSeconds"] - pre_stop


def test_tls_probes_and_helm_test_over_https(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    values = {
        "containerPort": free_port(),
        "config": {"LLM_CONTEXT_LENGTH": 1024},
        "tls": {"enabled": True, "secretName": "llm-tls"},
    }
    manifests = render(values)
    container = server_container(manifests)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secret_dir = tmp_path / "tls-secret"  # the Secret's keys as the kubelet projects them
    secret_dir.mkdir()
    (secret_dir / "tls.crt").write_bytes(cert.read_bytes())
    (secret_dir / "tls.key").write_bytes(key.read_bytes())
    env = pod_environment(manifests, container, {mounts["tls"]: secret_dir, mounts["model-cache"]: tmp_path / "hf"})
    kubelet = Kubelet(container)
    port = port_number(container, "http")

    with ServerProcess(env, log_path=tmp_path / "server.log", port=port, scheme="https") as server:
        kubelet.wait_until("startupProbe", True, timeout=120)
        assert kubelet.probe("readinessProbe") and kubelet.probe("livenessProbe")
        helm_test = run_helm_test(manifests, server.url)
        assert helm_test.returncode == 0, helm_test.stdout + helm_test.stderr
        # plain HTTP on the same port is no probe success
        assert not Kubelet(
            {
                **container,
                "livenessProbe": {
                    **container["livenessProbe"],
                    "httpGet": {**container["livenessProbe"]["httpGet"], "scheme": "HTTP"},
                },
            }
        ).probe("livenessProbe")
        assert server.stop() == 0
