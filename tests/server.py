"""Run the service as a real Granian process for server-level tests (probes, TLS, signals)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.polling import wait_until

BASE_ENV = {"LLM_LOG_FORMAT": "json", "LLM_CONTEXT_LENGTH": "1024", "LLM_INFERENCE_HOSTNAME": "127.0.0.1"}


def run_cli(command: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m llm_inference <command>` to its end with `env` on top of this environment, minus any
    LLM_* or HF_* variable of the caller's own."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "HF_"))}
    return subprocess.run(
        [sys.executable, "-m", "llm_inference", command],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        scheme: str = "http",
        port: int | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.command = command or [sys.executable, "-m", "llm_inference", "serve"]
        self.scheme = scheme
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_")}
        self.env = {**clean, **BASE_ENV, "LLM_INFERENCE_PORT": str(self.port), **(env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_for(self, path: str, status: int, timeout: float = 120, **client_args: object) -> httpx.Response:
        """The response of GET `path` once it has `status`. Fails at once if the server exits meanwhile."""

        def get() -> httpx.Response:
            assert self.process and self.process.poll() is None, f"server exited: {self.logs()}"
            return httpx.get(self.url + path, timeout=5, **client_args)  # type: ignore[arg-type]

        return wait_until(
            get,
            until=lambda response: response.status_code == status,
            timeout=timeout,
            what=f"{path} to answer {status}",
            interval=0.1,
            details=lambda: f"server log:\n{self.logs()}",
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
