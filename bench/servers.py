"""Start and stop a server process for a benchmark, waiting until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerSpec:
    name: str
    command: list[str]
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)


class RunningServer:
    def __init__(self, spec: ServerSpec, port: int, log_dir: Path) -> None:
        self.spec, self.port = spec, port
        self.url = f"http://127.0.0.1:{port}"
        command = [part.replace("{port}", str(port)) for part in spec.command]
        env = {**os.environ, **{k: v.replace("{port}", str(port)) for k, v in spec.env.items()}}
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(log_dir / f"{spec.name}.log", "ab")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode}; see its log")
            try:
                if httpx.get(self.url + self.spec.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.spec.name} not ready after {timeout}s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
