"""A local stand-in for the Hugging Face hub (HF_ENDPOINT), so the real huggingface-hub download path runs
without network. It serves one real model file, which it can hold back (keeping a model "loading" for as long
as a test needs), and any number of small repos (a tokenizer repo) for snapshot_download: their info, their
file tree and their files. `environment()` is what points the service at it; the `fake_hub` fixture
(tests/conftest.py) serves the embedded model on one for a test."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from llm_inference.model_spec import embedded_model_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(
        self,
        repo: str = "test-org/smollm2-gguf",
        *,
        small_repos: dict[str, dict[str, bytes]] | None = None,
        file_path: Path | None = None,  # the embedded model's GGUF if left out
    ) -> None:
        self.repo, self.file_path = repo, file_path or embedded_model_path()
        self.small_repos = small_repos or {}
        self.release = threading.Event()
        self.requests: list[str] = []
        size = self.file_path.stat().st_size
        etag = hashlib.sha256(str(self.file_path).encode()).hexdigest()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _small_repo(self, path: str) -> bool:
                """The routes snapshot_download takes: repo info, file tree, then each file."""
                for repo, files in hub.small_repos.items():
                    if path.startswith(f"/api/models/{repo}/revision/"):
                        siblings = [{"rfilename": name} for name in files]
                        self._send(200, json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings}).encode())
                        return True
                    if path.startswith(f"/api/models/{repo}/tree/"):
                        tree = [
                            {"type": "file", "path": name, "size": len(body), "oid": hashlib.sha1(body).hexdigest()}
                            for name, body in files.items()
                        ]
                        self._send(200, json.dumps(tree).encode(), Content_Type="application/json")
                        return True
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix):
                        name = path[len(prefix) :].split("/", 1)[-1]
                        if name not in files:
                            self._send(404)
                            return True
                        body = files[name]
                        self._send(
                            200,
                            body,
                            X_Repo_Commit=COMMIT,
                            ETag=f'"{hashlib.sha1(body).hexdigest()}"',
                            Content_Type="application/octet-stream",
                        )
                        return True
                return False

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
                if self._small_repo(unquote(urlsplit(self.path).path)):
                    hub.requests.append(f"{self.command} {self.path}")
                else:
                    self._headers()

            def do_GET(self) -> None:
                if self._small_repo(unquote(urlsplit(self.path).path)):
                    hub.requests.append(f"{self.command} {self.path}")
                    return
                hub.release.wait(120)
                if self._headers():
                    with hub.file_path.open("rb") as source:
                        while block := source.read(1 << 20):
                            self.wfile.write(block)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def spec(self) -> str:
        """The served model as LLM_ALLOWED_MODELS names it: org/repo:file.gguf."""
        return f"{self.repo}:{self.file_path.name}"

    def environment(self, hf_home: Path | None = None) -> dict[str, str]:
        """What points huggingface-hub at this hub: its endpoint, Xet off (this hub speaks plain HTTP only) and,
        given one, a cache of the test's own (HF_HOME)."""
        home = {"HF_HOME": str(hf_home)} if hf_home is not None else {}
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_XET": "1", **home}

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
