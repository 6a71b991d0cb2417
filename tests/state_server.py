"""A real Valkey or Redis server (Debian's valkey-server or redis-server) for the shared-state tests: on a free
port, its files in a temporary directory, nothing saved to disk, stopped (and started again) on demand.

Where neither server is installed the tests skip with the reason, unless LLM_TEST_REQUIRE_STATE_SERVER=1 (set by
`make test`, which installs one first): then they fail."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.server import free_port

BINARIES = ("valkey-server", "redis-server")


def server_binary() -> str:
    for name in BINARIES:
        if found := shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/bin:/usr/sbin"):
            return found
    reason = "neither valkey-server nor redis-server is installed (`make state-server` installs Debian's)"
    if os.environ.get("LLM_TEST_REQUIRE_STATE_SERVER") == "1":
        pytest.fail(f"LLM_TEST_REQUIRE_STATE_SERVER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _answers(port: int, tls: bool) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as plain:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        sock = context.wrap_socket(plain) if tls else plain
        sock.sendall(b"PING\r\n")
        # With a password the server answers -NOAUTH: up all the same.
        return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))


class StateServer:
    def __init__(self, directory: Path, password: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate, key) PEM files; the server then speaks TLS only."""
        self.binary = server_binary()
        self.directory, self.password, self.tls = directory, password, tls
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> StateServer:
        port = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        command = [
            self.binary,
            *port,
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "server.log"),
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        if self.tls:
            cert, key = self.tls
            command += ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-auth-clients", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, self.logs()
            return _answers(self.port, self.tls is not None)

        wait_until(answers, timeout=30, what=f"{self.binary} to answer on :{self.port}", details=self.logs)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # as a crash: no goodbye to its clients
            self.process.wait(10)
        self.process = None

    def logs(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def __enter__(self) -> StateServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
