"""A local stand-in for the Hugging Face hub's file endpoint (HF_ENDPOINT), so the real huggingface-hub
download path runs without network. It serves one real file and can hold downloads back, which keeps a
model "loading" for as long as a test needs."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repo: str, file_path: Path) -> None:
        self.repo, self.file_path = repo, file_path
        self.release = threading.Event()
        self.requests: list[str] = []
        size = file_path.stat().st_size
        etag = hashlib.sha256(str(file_path).encode()).hexdigest()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _headers(self) -> bool:
                hub.requests.append(f"{self.command} {self.path}")
                if self.path.split("?")[0] != f"/{hub.repo}/resolve/main/{hub.file_path.name}":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return False
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Content-Length", str(size))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                return True

            def do_HEAD(self) -> None:
                self._headers()

            def do_GET(self) -> None:
                hub.release.wait(120)
                if self._headers():
                    with hub.file_path.open("rb") as source:
                        while block := source.read(1 << 20):
                            self.wfile.write(block)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
