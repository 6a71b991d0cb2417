"""Server-side sessions against a real Granian process on the real model: their life, one turn at a time, a
cancelled turn recording nothing, pruning a session that outgrows the context, and LRU eviction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.api.sse import joined_text, parse_events
from tests.polling import wait_until
from tests.server import ServerProcess

pytestmark = pytest.mark.model

CONTEXT = 512
MAX_SESSIONS = 3
SYSTEM = "You are a helpful assistant."


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    env = {"LLM_CONTEXT_LENGTH": str(CONTEXT), "LLM_MAX_SESSIONS": str(MAX_SESSIONS), "LLM_DEFAULT_MAX_TOKENS": "8"}
    with ServerProcess(env, log_path=tmp_path_factory.mktemp("sessions") / "server.log") as process:
        process.wait_for("/health/ready", 200)
        yield process
    assert "Traceback" not in process.logs()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def new_session(http: httpx.Client, **body: Any) -> str:
    response = http.post("/api/sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def turn(http: httpx.Client, session_id: str, content: str, **fields: Any) -> httpx.Response:
    body = {"session_id": session_id, "messages": [user(content)], "max_tokens": 8, "temperature": 0, **fields}
    return http.post("/api/chat", json=body)


def wait_idle(http: httpx.Client, session_id: str) -> dict[str, Any]:
    """The session once its turn has ended (the server notices a client gone at its next write)."""
    view: dict[str, Any] = wait_until(
        lambda: http.get(f"/api/sessions/{session_id}").json(),
        until=lambda view: not view["busy"],
        timeout=60,
        what=f"session {session_id} to end its turn (busy false)",
        interval=0.1,
    )
    return view


def assert_no_session(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["type"] == "session_not_found" and error["param"] == "session_id"


def test_a_session_keeps_the_conversation_across_plain_and_streamed_turns(http: httpx.Client) -> None:
    created = http.post("/api/sessions", json={"system": SYSTEM})
    assert created.status_code == 201
    view = created.json()
    session_id = view["id"]
    assert view["messages"] == [{"role": "system", "content": SYSTEM}] and view["model"] == "smollm2-135m-instruct"
    assert view["expires_at"] == view["last_used_at"] + 3600 and view["tokens"] == 0
    assert http.options(f"/api/sessions/{session_id}").headers["allow"] == "DELETE, GET, OPTIONS"

    first = turn(http, session_id, "What is the capital of France?")
    assert first.status_code == 200, first.text
    answer = first.json()["message"]["content"]
    body = {"session_id": session_id, "messages": [user("And of Italy?")], "max_tokens": 8, "temperature": 0}
    events = parse_events(http.post("/api/chat/stream", json=body).text)
    done = events[-1]
    assert done["type"] == "done" and done["truncated_messages"] == 0
    # The second turn's prompt holds the first turn and its answer.
    assert done["usage"]["prompt_tokens"] > first.json()["usage"]["total_tokens"]

    view = http.get(f"/api/sessions/{session_id}").json()
    assert view["messages"] == [
        {"role": "system", "content": SYSTEM},
        user("What is the capital of France?"),
        {"role": "assistant", "content": answer},
        user("And of Italy?"),
        {"role": "assistant", "content": joined_text(events)},
    ]
    assert view["tokens"] == done["usage"]["total_tokens"] and not view["busy"]

    assert http.delete(f"/api/sessions/{session_id}").status_code == 204
    assert_no_session(http.get(f"/api/sessions/{session_id}"))
    assert_no_session(http.delete(f"/api/sessions/{session_id}"))
    assert_no_session(turn(http, session_id, "Still there?"))


def test_an_unknown_session_is_a_404_naming_session_id(http: httpx.Client) -> None:
    assert_no_session(http.get("/api/sessions/" + "0" * 32))
    assert_no_session(http.delete("/api/sessions/nope"))
    assert_no_session(turn(http, "nope", "Hi"))
    assert_no_session(turn(http, "nope", "Hi", stream=True))  # before any event is sent
    assert_no_session(http.post("/api/chat/stream", json={"session_id": "nope", "messages": [user("Hi")]}))


def test_creating_a_session_checks_its_fields(http: httpx.Client) -> None:
    assert http.post("/api/sessions").status_code == 201  # no body: the defaults
    null = http.post("/api/sessions", content=b"null", headers={"Content-Type": "application/json"})
    assert null.status_code == 422 and null.json()["error"]["message"] == "the body must be an object, or left out"
    unknown_model = http.post("/api/sessions", json={"model": "someone/else"})
    assert unknown_model.status_code == 404 and unknown_model.json()["error"]["param"] == "model"
    empty_system = http.post("/api/sessions", json={"system": ""})
    assert empty_system.status_code == 422 and empty_system.json()["error"]["param"] == "system"
    nul = http.post("/api/sessions", json={"system": "a\u0000b"})
    assert nul.status_code == 422 and nul.json()["error"]["param"] == "system"


def test_one_turn_at_a_time_and_a_cancelled_turn_records_nothing(http: httpx.Client, server: ServerProcess) -> None:
    session_id = new_session(http, system=SYSTEM)
    endless = {
        "session_id": session_id,
        "messages": [user("Tell me a long story.")],
        "max_tokens": 400,
        "ignore_eos": True,
    }
    with (
        httpx.Client(base_url=server.url, timeout=120) as other,
        other.stream("POST", "/api/chat/stream", json=endless) as stream,
    ):
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # the turn is generating
        busy = turn(http, session_id, "Meanwhile?")
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"]["type"] == "session_busy" and busy.json()["error"]["param"] == "session_id"
        assert http.get(f"/api/sessions/{session_id}").json()["busy"]
    # The client left mid-answer: the turn ends and the session is as it was before it.
    view = wait_idle(http, session_id)
    assert view["messages"] == [{"role": "system", "content": SYSTEM}] and view["tokens"] == 0
    after = turn(http, session_id, "Hello?")
    assert after.status_code == 200, after.text
    assert [m["role"] for m in http.get(f"/api/sessions/{session_id}").json()["messages"]] == [
        "system",
        "user",
        "assistant",
    ]


def test_a_refused_turn_records_nothing_and_frees_the_session(http: httpx.Client) -> None:
    session_id = new_session(http)
    too_long = turn(http, session_id, "the sea and ships " * 200)
    assert too_long.status_code == 400 and too_long.json()["error"]["type"] == "context_length_exceeded"
    assert turn(http, session_id, "Hi", max_tokens=100_000).status_code == 422
    view = http.get(f"/api/sessions/{session_id}").json()
    assert view["messages"] == [] and not view["busy"]
    assert turn(http, session_id, "Hi").status_code == 200


def test_a_session_that_outgrows_the_context_keeps_going_with_truncate_oldest(http: httpx.Client) -> None:
    session_id = new_session(http, system=SYSTEM)
    # ~170 tokens a turn: the third no longer fits beside the first two (512 - max_tokens 8).
    question = "Tell me about the sea and ships, with many details please. " * 13
    dropped_per_turn = []
    for _ in range(3):
        response = turn(http, session_id, question, truncate="oldest")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["usage"]["prompt_tokens"] + 8 <= CONTEXT
        dropped_per_turn.append(body["truncated_messages"])
    assert dropped_per_turn == [0, 0, 2]  # the first turn (question and answer) went
    view = http.get(f"/api/sessions/{session_id}").json()
    assert view["truncated_messages"] == sum(dropped_per_turn)
    roles = [m["role"] for m in view["messages"]]
    # Whole turns went: the system message stays, and the history opens with a question.
    assert roles[:2] == ["system", "user"] and roles[-2:] == ["user", "assistant"]
    assert len(roles) == 1 + 2 * 3 - 2
    # Without truncate, the grown session is refused rather than cut, and stays as it was.
    refused = turn(http, session_id, question * 2)
    assert refused.status_code == 400 and '"truncate": "oldest"' in refused.json()["error"]["message"]
    assert http.get(f"/api/sessions/{session_id}").json()["messages"] == view["messages"]


def test_the_least_recently_used_session_is_evicted(http: httpx.Client) -> None:
    first, second, third = (new_session(http) for _ in range(MAX_SESSIONS))
    assert turn(http, first, "Hi").status_code == 200  # now `second` is the least recently used
    fourth = new_session(http)
    assert_no_session(http.get(f"/api/sessions/{second}"))
    for kept in (first, third, fourth):
        assert http.get(f"/api/sessions/{kept}").status_code == 200


def test_a_session_over_the_websocket_and_a_cancel_that_records_nothing(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        session_id = new_session(http)
        with connect(server.url.replace("http", "ws", 1) + "/api/chat/ws", open_timeout=30) as socket:
            socket.send(json.dumps({"session_id": session_id, "messages": [user("Hi")], "max_tokens": 4}))
            while (event := json.loads(socket.recv(timeout=120)))["type"] == "delta":
                pass
            assert event["type"] == "done" and event["truncated_messages"] == 0
            recorded = http.get(f"/api/sessions/{session_id}").json()["messages"]
            assert [m["role"] for m in recorded] == ["user", "assistant"]
            long_turn = {"session_id": session_id, "messages": [user("More?")], "max_tokens": 400, "ignore_eos": True}
            socket.send(json.dumps(long_turn))
            assert json.loads(socket.recv(timeout=120))["type"] == "delta"
            socket.send(json.dumps({"type": "cancel"}))
            while (event := json.loads(socket.recv(timeout=120)))["type"] == "delta":
                pass
            assert event["type"] == "error" and event["error"]["type"] == "cancelled"
        assert wait_idle(http, session_id)["messages"] == recorded


def test_the_openapi_document_describes_the_session_routes(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    create = spec["paths"]["/api/sessions"]["post"]
    assert create["requestBody"]["required"] is False  # the body may be left out
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateSessionRequest"
    }
    assert {"201", "404", "422", "429"} <= set(create["responses"])
    one = spec["paths"]["/api/sessions/{session_id}"]
    assert set(one) >= {"get", "delete"} and "404" in one["get"]["responses"] and "404" in one["delete"]["responses"]
    assert {"404", "409"} <= set(spec["paths"]["/api/chat"]["post"]["responses"])
    assert {"404", "409"} <= set(spec["paths"]["/api/chat/stream"]["post"]["responses"])
    chat = spec["components"]["schemas"]["ChatRequest"]["properties"]
    assert chat["truncate"]["enum"] == ["none", "oldest"] and "session_id" in chat
