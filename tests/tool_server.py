"""A real HTTP tool server for the server-side tool round tests (LLM_TOOL_DISPATCH_URL): a thread on 127.0.0.1
that records every call it receives and answers it by the function's name."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# How long the `slow` tool waits before it answers, unless the test ends first: far past any dispatch timeout.
SLOW_SECONDS = 60


class ToolServer:
    """What each function does: `fail` answers 500, `slow` answers only after SLOW_SECONDS, `huge` answers
    `huge_bytes` bytes, `plain` answers text that is not JSON; any other answers `{"content": "<name> says
    ..."}` with the arguments it got."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}/call"
        self.calls: list[dict[str, Any]] = []  # each: the request's headers and JSON body
        self.huge_bytes = 1 << 20
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def record(self, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append({"headers": headers, "body": body})

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [call["body"] for call in self.calls]

    def answer(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        name = body.get("name")
        if name == "fail":
            return 500, b'{"error": "the tool broke"}', "application/json"
        if name == "slow":
            self.stop.wait(SLOW_SECONDS)
            return 200, b'{"content": "too late"}', "application/json"
        if name == "huge":
            return 200, b"x" * self.huge_bytes, "text/plain"
        if name == "plain":
            return 200, "plain text, not JSON: 21 °C".encode(), "text/plain; charset=utf-8"
        content = f"{name} says: 18 degrees Celsius and sunny (arguments {json.dumps(body.get('arguments'))})"
        return 200, json.dumps({"content": content}).encode(), "application/json"


def _handler(tools: ToolServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            tools.record(dict(self.headers.items()), body)
            status, payload, media_type = tools.answer(body)
            try:
                self.send_response(status)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the service gave up on this call (its timeout): nobody reads the answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@contextmanager
def tool_server() -> Iterator[ToolServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    httpd.block_on_close = False  # type: ignore[misc]
    tools = ToolServer(httpd)
    httpd.RequestHandlerClass = _handler(tools)
    thread = threading.Thread(target=httpd.serve_forever, name="tool-server", daemon=True)
    thread.start()
    try:
        yield tools
    finally:
        tools.stop.set()  # a `slow` call still waiting answers now
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
