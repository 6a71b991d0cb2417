"""Server-side tool rounds end to end: a real Granian process serving the embedded model, with
LLM_TOOL_DISPATCH_URL pointing at a real HTTP tool server started here, driven by the openai SDK and plain HTTP
on /api: the round runs (the tool gets arguments that match its schema, with the key file's bearer token), the
answer reports it, whole and streamed, on both surfaces; failing and slow tools give clear errors at once and
the server goes on; the round limit holds; a bad URL stops start-up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.api.openai.conftest import MODEL, sdk
from tests.polling import wait_until
from tests.server import ServerProcess, run_cli
from tests.tool_server import ToolServer, tool_server
from tests.weather_tool import WEATHER_PARAMETERS

TOKEN = "tool-dispatch-token-0123456789"
MAX_ROUNDS = 2


def tool(name: str, server: bool = True) -> dict[str, Any]:
    function = {"name": name, "description": "The current weather in a city.", "parameters": WEATHER_PARAMETERS}
    return {"type": "function", "function": function, "server": server}


def named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


ASK: Any = [{"role": "user", "content": "What is the weather like in Paris today?"}]
WEATHER: Any = [tool("get_weather")]
# The requests that run rounds ask for one call per answer (parallel_tool_calls false): several calls in one
# answer can run past max_tokens, and an answer cut short goes to the client as it is, its calls not run.


@pytest.fixture(scope="module")
def tools() -> Iterator[ToolServer]:
    with tool_server() as server:
        yield server


@pytest.fixture(scope="module")
def server(tools: ToolServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("tool-rounds")
    (directory / "token").write_text(TOKEN + "\n")
    env = {
        "LLM_DEFAULT_MAX_TOKENS": "48",
        "LLM_TOOL_DISPATCH_URL": tools.url,
        "LLM_TOOL_DISPATCH_KEY_FILE": str(directory / "token"),
        "LLM_TOOL_DISPATCH_TIMEOUT_SECONDS": "1",
        "LLM_MAX_TOOL_ROUNDS": str(MAX_ROUNDS),
        "LLM_TOOL_RESULT_MAX_BYTES": "4096",
    }
    with ServerProcess(env, log_path=directory / "server.log") as process:
        process.wait_for("/health/ready", 200)
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with sdk(server.url) as sync_client:
        yield sync_client.with_options(timeout=120)  # bounds every wait below: no test can hang


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as plain:
        yield plain


@pytest.fixture(autouse=True)
def forget_calls(tools: ToolServer) -> None:
    tools.calls.clear()


def check_rounds(rounds: list[dict[str, Any]], tools: ToolServer) -> None:
    """1..MAX_ROUNDS rounds; each call reached the tool server as sent, with arguments that match the schema and
    the key file's token; each result is what the tool answered, for its call."""
    assert 1 <= len(rounds) <= MAX_ROUNDS, rounds
    calls = [call for round_ in rounds for call in round_["calls"]]
    assert len(tools.calls) == len(calls), (tools.calls, rounds)
    for round_ in rounds:
        assert [r["tool_call_id"] for r in round_["results"]] == [c["id"] for c in round_["calls"]]
        for call, result in zip(round_["calls"], round_["results"], strict=True):
            [received] = [c for c in tools.calls if c["body"]["id"] == call["id"]]
            assert received["headers"]["Authorization"] == f"Bearer {TOKEN}"
            assert received["body"] == {
                "id": call["id"],
                "name": "get_weather",
                "arguments": json.loads(call["arguments"]),
            }
            jsonschema.validate(received["body"]["arguments"], WEATHER_PARAMETERS)
            assert result["content"].startswith("get_weather says: 18 degrees Celsius"), result


@pytest.mark.model
def test_a_round_runs_and_the_model_answers_with_its_result(client: openai.OpenAI, tools: ToolServer) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=WEATHER,
        tool_choice=named("get_weather"),
        parallel_tool_calls=False,
        max_tokens=64,
        temperature=0,
    )
    choice = completion.choices[0]
    # Every call is to a server tool and the last generation may not call: the client gets an answer.
    assert choice.finish_reason in ("stop", "length"), choice
    assert choice.message.tool_calls is None and isinstance(choice.message.content, str), choice
    assert completion.model_extra is not None
    check_rounds(completion.model_extra["tool_rounds"], tools)


@pytest.mark.model
def test_streamed_the_rounds_ride_on_the_finishing_chunk(client: openai.OpenAI, tools: ToolServer) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=WEATHER,
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=64,
            temperature=0,
            stream=True,
        )
    )
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length"), last
    assert all(not chunk.choices[0].delta.tool_calls for chunk in chunks)
    assert last.model_extra is not None
    check_rounds(last.model_extra["tool_rounds"], tools)
    assert all("tool_rounds" not in (chunk.model_extra or {}) for chunk in chunks[:-1])


@pytest.mark.model
def test_api_chat_reports_its_rounds_whole_and_streamed(http: httpx.Client, tools: ToolServer) -> None:
    body = {
        "messages": ASK,
        "tools": WEATHER,
        "tool_choice": named("get_weather"),
        "parallel_tool_calls": False,
        "max_tokens": 64,
        "temperature": 0,
    }
    answer = http.post("/api/chat", json=body).json()
    assert answer["finish_reason"] in ("stop", "length") and "tool_calls" not in answer["message"], answer
    check_rounds(answer["tool_rounds"], tools)
    tools.calls.clear()
    events = []
    with http.stream("POST", "/api/chat/stream", json=body) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    done = events[-1]
    assert done["type"] == "done" and done["finish_reason"] in ("stop", "length"), done
    assert {e["type"] for e in events[:-1]} <= {"delta"}
    check_rounds(done["tool_rounds"], tools)


@pytest.mark.model
def test_no_round_no_field(http: httpx.Client, tools: ToolServer) -> None:
    body = {"messages": ASK, "tools": WEATHER, "tool_choice": "none", "max_tokens": 8}
    assert "tool_rounds" not in http.post("/api/chat", json=body).json()
    completion = http.post("/v1/chat/completions", json={"model": MODEL, **body}).json()
    assert "tool_rounds" not in completion and tools.calls == []


@pytest.mark.model
def test_a_client_tool_call_goes_to_the_client_and_nothing_is_run(client: openai.OpenAI, tools: ToolServer) -> None:
    choice = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[*WEATHER, tool("ask_user", server=False)],
        tool_choice=named("ask_user"),
        max_tokens=64,
        temperature=0,
    ).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    assert [c.function.name for c in choice.message.tool_calls] == ["ask_user"]
    assert tools.calls == []


@pytest.mark.model
@pytest.mark.parametrize(
    ("name", "status", "code", "cause"),
    [
        ("fail", 502, "tool_dispatch_failed", "answered HTTP 500"),
        ("huge", 502, "tool_dispatch_failed", "larger than LLM_TOOL_RESULT_MAX_BYTES=4096"),
        ("slow", 504, "tool_dispatch_timeout", "within LLM_TOOL_DISPATCH_TIMEOUT_SECONDS=1"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_or_slow_tool_is_a_clear_error_and_the_server_goes_on(
    client: openai.OpenAI,
    http: httpx.Client,
    tools: ToolServer,
    name: str,
    status: int,
    code: str,
    cause: str,
    stream: bool,
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[tool(name)], tool_choice=named(name), max_tokens=64, stream=stream
        )
    error = caught.value
    assert error.status_code == status and error.code == code, error.body
    assert f"tool {name!r}" in error.message and cause in error.message, error.message
    assert [c["body"]["name"] for c in tools.calls] == [name]
    # /api says the same; and the server goes on serving
    response = http.post("/api/chat", json={"messages": ASK, "tools": [tool(name)], "tool_choice": named(name)})
    assert response.status_code == status and response.json()["error"]["type"] == code, response.text
    assert http.get("/health/ready").status_code == 200
    assert http.post("/api/chat", json={"messages": ASK, "max_tokens": 4}).status_code == 200


@pytest.mark.model
def test_dispatches_are_counted_by_outcome(http: httpx.Client, server: ServerProcess) -> None:
    def count(outcome: str) -> float:
        line = f'llm_tool_dispatch_total{{outcome="{outcome}"}} '
        text = http.get("/metrics").text
        return next((float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)), 0.0)

    before = count("error_status")
    body = {"messages": ASK, "tools": [tool("fail")], "tool_choice": named("fail")}
    assert http.post("/api/chat", json=body).status_code == 502
    wait_until(lambda: count("error_status"), until=lambda seen: seen == before + 1, timeout=30, what="the count")


@pytest.mark.model
def test_server_tools_are_refused_where_no_dispatch_url_is_set(tmp_path: Path) -> None:
    with ServerProcess({"LLM_DEFAULT_MAX_TOKENS": "8"}, log_path=tmp_path / "server.log") as process:
        process.wait_for("/health/ready", 200)
        with sdk(process.url) as plain_client, pytest.raises(openai.BadRequestError) as caught:
            plain_client.chat.completions.create(model=MODEL, messages=ASK, tools=WEATHER, tool_choice="required")
    assert caught.value.status_code == 400 and caught.value.param == "tools[0].server", caught.value.body  # type: ignore[attr-defined]
    assert "LLM_TOOL_DISPATCH_URL" in caught.value.message


def test_a_bad_dispatch_url_stops_start_up_naming_it(tmp_path: Path) -> None:
    result = run_cli("serve", {"LLM_TOOL_DISPATCH_URL": "ftp://tools.internal/call"})
    assert result.returncode == 2, result.stderr
    assert "LLM_TOOL_DISPATCH_URL='ftp://tools.internal/call' is invalid: expected an http:// or https:// URL" in (
        result.stderr
    )
    (tmp_path / "empty").write_text("\n")
    result = run_cli(
        "check-config",
        {"LLM_TOOL_DISPATCH_URL": "http://tools:8080", "LLM_TOOL_DISPATCH_KEY_FILE": str(tmp_path / "empty")},
    )
    assert (
        result.returncode == 2
        and "LLM_TOOL_DISPATCH_KEY_FILE=" in result.stderr
        and "the file is empty" in result.stderr
    )
