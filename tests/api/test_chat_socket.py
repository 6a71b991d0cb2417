"""GET /api/chat/ws against a real Granian process, with a real WebSocket client (the websockets package)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.api.test_chat import QUESTION
from tests.api.test_errors import BAD_INPUTS
from tests.polling import wait_until
from tests.server import ServerProcess

pytestmark = pytest.mark.model

KEY = "k" * 20 + "-socket-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
REQUEST = {"messages": QUESTION, "max_tokens": 16, "temperature": 0}
# Long enough to be cancelled mid-way: the model keeps going past its end-of-sequence token.
ENDLESS = {"messages": QUESTION, "max_tokens": 900, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    env = {
        "LLM_API_KEYS": KEY,
        "LLM_MAX_REQUEST_BYTES": "65536",
        # One request at a time: after a socket closes mid-generation, a request can only succeed if the
        # socket's admission slot came back.
        "LLM_MAX_CONCURRENT_REQUESTS": "1",
        "LLM_MAX_QUEUED_REQUESTS": "0",
    }
    with ServerProcess(env, log_path=tmp_path_factory.mktemp("socket") / "server.log") as process:
        process.wait_for("/health/ready", 200)
        yield process
    assert "Traceback" not in process.logs()


def ws_url(server: ServerProcess) -> str:
    return server.url.replace("http", "ws", 1) + "/api/chat/ws"


def open_socket(server: ServerProcess, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("additional_headers", AUTH)
    return connect(ws_url(server), open_timeout=30, max_size=None, **kwargs)


def events_until_final(socket: ClientConnection) -> list[dict[str, Any]]:
    """The events of one request: deltas, then the done or error event that ends it."""
    events = []
    while True:
        event = json.loads(socket.recv(timeout=120))
        events.append(event)
        if event["type"] in {"done", "error"}:
            return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


def engine_counters(server: ServerProcess) -> tuple[float, float]:
    """(requests the engine is running or holds waiting, generations that ended cancelled) from /metrics."""
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    busy = sum(float(v) for v in re.findall(r"^llm_num_requests_(?:running|waiting)\{[^}]*\} (\S+)$", metrics, re.M))
    cancelled = sum(
        float(v)
        for v in re.findall(
            r'^llm_requests_finished_total\{[^}]*finish_reason="cancelled"[^}]*\} (\S+)$', metrics, re.M
        )
    )
    return busy, cancelled


def wait_until_cancelled(server: ServerProcess, before: float) -> None:
    """Until the engine holds nothing and counts one more cancelled generation than `before`."""
    wait_until(
        lambda: engine_counters(server),
        until=lambda counters: counters[0] == 0 and counters[1] > before,
        timeout=30,
        what=f"the engine to let the generation go ((busy, cancelled) to be (0, > {before}))",
        interval=0.1,
    )


def test_requests_are_answered_in_order_with_the_sse_events(server) -> None:
    http = httpx.post(server.url + "/api/chat", json=REQUEST, headers=AUTH, timeout=120).json()
    with open_socket(server) as socket:
        socket.send(json.dumps(REQUEST))
        socket.send(json.dumps({**REQUEST, "max_tokens": 3}))  # sent before the first is answered: it waits
        first, second = events_until_final(socket), events_until_final(socket)
    assert first[-1]["type"] == "done" and text_of(first) == http["message"]["content"]
    assert first[-1]["usage"] == http["usage"] and first[-1]["model"] == "smollm2-135m-instruct"
    assert second[-1]["type"] == "done" and second[-1]["usage"]["completion_tokens"] <= 3
    assert http["message"]["content"].startswith(text_of(second))


WS_BAD_INPUTS = [b for b in BAD_INPUTS if b.status != 415]  # a WebSocket message has no Content-Type


@pytest.mark.parametrize("bad", WS_BAD_INPUTS, ids=[b.name for b in WS_BAD_INPUTS])
def test_bad_message_gets_the_http_error_and_the_socket_stays_open(server, bad) -> None:
    over_http = httpx.post(
        server.url + "/api/chat",
        content=bad.content(),
        headers={**AUTH, "content-type": "application/json"},
        timeout=120,
    )
    assert over_http.status_code == bad.status or bad.path != "/api/chat", over_http.text
    with open_socket(server) as socket:
        try:
            socket.send(bad.content().decode())
        except UnicodeDecodeError:
            socket.send(bad.content())  # not UTF-8: only a binary message can carry it
        error = events_until_final(socket)
        assert error == [{"type": "error", "error": over_http.json()["error"]}]
        socket.send(json.dumps({**REQUEST, "max_tokens": 2}))
        assert events_until_final(socket)[-1]["type"] == "done"


def test_cancel_ends_the_running_generation_and_frees_the_engine(server) -> None:
    _, cancelled_before = engine_counters(server)
    with open_socket(server) as socket:
        socket.send(json.dumps(ENDLESS))
        assert json.loads(socket.recv(timeout=120))["type"] == "delta"
        socket.send(json.dumps({"type": "cancel"}))
        events = events_until_final(socket)
        assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "cancelled"
        assert len(events) < ENDLESS["max_tokens"]
        wait_until_cancelled(server, cancelled_before)
        socket.send(json.dumps(REQUEST))  # the socket goes on
        assert events_until_final(socket)[-1]["type"] == "done"


def test_a_closed_socket_aborts_its_generation_and_gives_back_its_slot(server) -> None:
    _, cancelled_before = engine_counters(server)
    with open_socket(server) as socket:
        socket.send(json.dumps(ENDLESS))
        assert json.loads(socket.recv(timeout=120))["type"] == "delta"
    wait_until_cancelled(server, cancelled_before)
    # The only admission slot must be free again: this request would get 429 otherwise.
    response = httpx.post(
        server.url + "/api/generate", json={"prompt": "Hi", "max_tokens": 2}, headers=AUTH, timeout=120
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"additional_headers": {}},
        {"additional_headers": {"Authorization": "Bearer " + "w" * 24}},
        {"additional_headers": {}, "subprotocols": ["bearer", "bearer." + "w" * 24]},
    ],
    ids=["no key", "wrong key", "wrong key as subprotocol"],
)
def test_handshake_without_a_valid_key_is_refused(server, kwargs) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, **kwargs)
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["type"] == "unauthorized"
    assert KEY not in response.body.decode()


def test_key_as_a_subprotocol_for_browsers(server) -> None:
    with open_socket(server, additional_headers={}, subprotocols=["bearer", "bearer." + KEY]) as socket:
        assert socket.subprotocol == "bearer"
        socket.send(json.dumps({**REQUEST, "max_tokens": 2}))
        assert events_until_final(socket)[-1]["type"] == "done"


def test_format_constrains_a_socket_turn_and_a_refused_schema_keeps_the_socket(server) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    with open_socket(server) as socket:
        socket.send(json.dumps({**REQUEST, "max_tokens": 32, "format": schema}))
        events = events_until_final(socket)
        assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "stop", events[-1]
        assert set(json.loads(text_of(events))) == {"city"}
        socket.send(json.dumps({**REQUEST, "format": {"type": "string", "pattern": "x"}}))
        [error] = events_until_final(socket)
        assert error["error"]["type"] == "unsupported_parameter" and error["error"]["param"] == "format.pattern"
        socket.send(json.dumps({**REQUEST, "max_tokens": 2}))
        assert events_until_final(socket)[-1]["type"] == "done"
