"""OpenAI's Responses API (POST /v1/responses) through the real openai SDK, against a real Granian process serving
the embedded model: text and message-list input with instructions, the cut at max_output_tokens, the streamed
events, a function call and the turn that answers it, structured output parsed into a pydantic model, and the
fields that are refused by name. The model is tiny: what is asserted is structure, never the sense of an answer."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.api.openai.conftest import MODEL, QUESTION
from tests.weather_tool import WEATHER_PARAMETERS

pytestmark = pytest.mark.model

INSTRUCTIONS = QUESTION[0]["content"]
ASK = QUESTION[1]["content"]
ASK_WEATHER: Any = [{"role": "user", "content": "What is the weather like in Paris today?"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": WEATHER_PARAMETERS,
    "strict": True,
}


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=12)
    age: int


def test_text_input_is_answered_with_a_completed_response(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input=ASK, instructions=INSTRUCTIONS, max_output_tokens=32, temperature=0
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed" and response.incomplete_details is None and response.error is None
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.status == "completed"
    [part] = message.content
    assert part.type == "output_text" and part.annotations == [] and part.text == response.output_text != ""
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and 0 < usage.output_tokens <= 32
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    # The request's settings, echoed; nothing is stored.
    assert (response.model, response.instructions, response.temperature, response.max_output_tokens) == (
        MODEL,
        INSTRUCTIONS,
        0,
        32,
    )
    assert response.tools == [] and response.tool_choice == "auto" and response.store is False


def test_a_message_list_with_instructions_is_the_chat_endpoints_conversation(client: openai.OpenAI) -> None:
    """Instructions are a system message before the input; input_text parts are the message's text. At
    temperature 0 the answer is the chat completion's for the same messages."""
    response = client.responses.create(
        model=MODEL,
        instructions=INSTRUCTIONS,
        input=[{"role": "user", "content": [{"type": "input_text", "text": ASK}]}],
        max_output_tokens=24,
        temperature=0,
    )
    chat = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    assert response.output_text == chat.choices[0].message.content
    assert response.usage is not None and chat.usage is not None
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    # A developer message is a system message too, and an earlier answer can be replayed as an output message.
    replayed = client.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": INSTRUCTIONS},
            {"role": "user", "content": ASK},
            *response.output,  # type: ignore[list-item]
            {"role": "user", "content": "And of Italy?"},
        ],
        max_output_tokens=8,
        temperature=0,
    )
    assert replayed.output_text


def test_max_output_tokens_cuts_the_answer_as_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input=ASK, max_output_tokens=3, temperature=0)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 3
    assert response.output[0].status == "incomplete" and response.output_text


def sequence(events: list[Any]) -> list[str]:
    """The events' types, after checking that their sequence numbers count up from 0."""
    assert [event.sequence_number for event in events] == list(range(len(events)))
    return [event.type for event in events]


def test_streamed_events_come_in_order_and_add_up_to_the_answer(client: openai.OpenAI) -> None:
    request: Any = {
        "model": MODEL,
        "input": ASK,
        "instructions": INSTRUCTIONS,
        "max_output_tokens": 32,
        "temperature": 0,
    }
    events = list(client.responses.create(**request, stream=True))
    types = sequence(events)
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1  # streamed, not one block
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, done, final = events[0].response, events[-4], events[-1].response
    text = "".join(delta.delta for delta in deltas)
    assert done.text == text == final.output_text
    assert created.id == final.id and created.status == "in_progress" and final.status == "completed"
    item_id = events[2].item.id
    assert {event.item_id for event in deltas} == {item_id} and final.output[0].id == item_id
    assert final.usage is not None and final.usage.output_tokens > 0
    # The same answer as a whole response, and through the SDK's stream helper.
    assert client.responses.create(**request).output_text == text
    with client.responses.stream(**request) as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == text


def test_a_stream_is_server_sent_events_named_by_type_without_done(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": ASK, "max_output_tokens": 4, "stream": True}
    with http.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    frames = [frame for frame in raw.split("\n\n") if frame and not frame.startswith(":")]
    for frame in frames:
        event_line, data_line = frame.split("\n")
        assert event_line == "event: " + json.loads(data_line.removeprefix("data: "))["type"]
    assert frames[-1].startswith("event: response.incomplete\n")  # 4 tokens cut it; no [DONE] after
    assert "[DONE]" not in raw


def check_call(item: Any) -> None:
    assert item.type == "function_call" and item.name == "get_weather" and item.status == "completed"
    assert item.call_id.startswith("call_") and item.id.startswith("fc_")
    jsonschema.validate(json.loads(item.arguments), WEATHER_PARAMETERS)


def test_a_required_function_call_and_the_turn_that_answers_it(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        input=ASK_WEATHER,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=64,
        temperature=0,
    )
    assert response.status == "completed"
    [call] = response.output
    check_call(call)
    assert call.type == "function_call"
    assert response.tools[0].name == "get_weather" and response.tool_choice == "required"
    assert response.parallel_tool_calls is False
    # The next turn: the call replayed from the response, then its output; "none" makes the model answer.
    answer = client.responses.create(
        model=MODEL,
        input=[
            *ASK_WEATHER,
            *response.output,
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees Celsius and sunny"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="none",
        max_output_tokens=32,
        temperature=0,
    )
    assert [item.type for item in answer.output] == ["message"] and answer.output_text


def test_a_streamed_function_call_adds_up_to_the_call(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model=MODEL,
            input=ASK_WEATHER,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "name": "get_weather"},
            max_output_tokens=64,
            temperature=0,
            stream=True,
        )
    )
    types = sequence(events)
    deltas = [event for event in events if event.type == "response.function_call_arguments.delta"]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * len(deltas),
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, done, final = events[2].item, events[-3], events[-1].response
    assert added.type == "function_call" and added.arguments == "" and added.status == "in_progress"
    assert "".join(delta.delta for delta in deltas) == done.arguments
    [call] = final.output
    check_call(call)
    assert (call.id, call.call_id, call.arguments) == (added.id, added.call_id, done.arguments)


def test_structured_output_parses_into_a_pydantic_model(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(
        model=MODEL,
        input="Describe a person with a name and an age.",
        text_format=Person,
        max_output_tokens=48,
        temperature=0,
    )
    assert isinstance(parsed.output_parsed, Person)
    assert parsed.text is not None and parsed.text.format is not None and parsed.text.format.type == "json_schema"
    # JSON mode: any JSON object.
    whole = client.responses.create(
        model=MODEL,
        input="A person as a JSON object with a name and an age.",
        text={"format": {"type": "json_object"}},
        max_output_tokens=48,
        temperature=0,
    )
    assert whole.status == "completed" and isinstance(json.loads(whole.output_text), dict)


def error_of(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"include": ["message.output_text.logprobs"]}, "include[0]"),
        ({"text": {"verbosity": "high"}}, "text.verbosity"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        (
            {"text": {"format": {"type": "json_schema", "name": "s", "schema": {"pattern": "a+"}}}},
            "text.format.schema.pattern",
        ),
    ],
)
def test_a_field_that_cannot_be_honoured_is_refused_naming_it(http: httpx.Client, fields: Any, param: str) -> None:
    error = error_of(http.post("/v1/responses", json={"model": MODEL, "input": "Hi", **fields}))
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "unsupported_parameter", param)
    assert error["message"].startswith(param), error


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": [{"role": "robot", "content": "Hi"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"tools": [{"type": "function", "name": "f", "parameter": {}}]}, "tools[0].parameter"),
        (
            {"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}},
            "tool_choice.name",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"max_output_tokens": 100_000}, "max_output_tokens"),
        ({"input": "a\u0000b"}, "input"),
    ],
)
def test_an_invalid_field_is_a_bad_request_naming_it(http: httpx.Client, fields: Any, param: str) -> None:
    error = error_of(http.post("/v1/responses", json={"model": MODEL, "input": "Hi", **fields}))
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_parameter", param)
    assert error["message"].startswith(param), error


def test_every_invalid_field_is_listed_at_once(http: httpx.Client) -> None:
    error = error_of(
        http.post("/v1/responses", json={"input": "Hi", "temperature": 5, "max_output_tokens": 0, "colour": 1})
    )
    assert error["param"] == "temperature"
    for rule in (
        "temperature: must be a number >= 0 and <= 2",
        "max_output_tokens: must be an integer >= 1",
        "colour: unknown field",
    ):
        assert rule in error["message"], error


def test_the_sdk_raises_bad_request_for_a_refused_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="Hi", tools=[{"type": "web_search"}])
    assert refused.value.body["param"] == "tools[0].type"  # type: ignore[index]


def test_harmless_fields_are_accepted_and_nothing_is_stored(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        input="Hi",
        max_output_tokens=2,
        store=True,
        metadata={"team": "tests"},
        user="someone",
        service_tier="auto",
        prompt_cache_key="k",
        safety_identifier="s",
        truncation="disabled",
        reasoning={"effort": None},
        include=["reasoning.encrypted_content"],
        parallel_tool_calls=True,
    )
    assert response.metadata == {"team": "tests"} and response.user == "someone" and response.store is False
    for call in (client.responses.retrieve, client.responses.delete, client.responses.cancel):
        with pytest.raises(openai.NotFoundError) as missing:
            call(response.id)
        assert missing.value.body["code"] == "response_not_found" and "not stored" in missing.value.body["message"]  # type: ignore[index]


def test_the_endpoint_is_outside_the_services_own_openapi_document(http: httpx.Client) -> None:
    """As every /v1 route: its contract is OpenAI's published one (docs/openai.md), not this service's document, which
    schemathesis fuzzes (tests/test_fuzz.py); test_generated_bodies_never_fail_the_server covers it instead."""
    paths = http.get("/openapi.json").json()["paths"]
    assert paths and not [path for path in paths if path.startswith("/v1")]


# Pieces of bodies, valid and not, for generated requests: the fields' own values and the wrong ones beside them.
VALUES: list[Any] = [None, True, 0, 3, -1, 1.5, "", "x", "a\u0000b", [], {}, "function", "message", "user"]
KEYS = ["type", "role", "content", "text", "name", "arguments", "call_id", "output", "parameters", "schema", "format"]
ITEMS: list[Any] = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
    {"role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
]
FIELDS: dict[str, list[Any]] = {
    "instructions": ["Be brief.", "", None],
    "tools": [[WEATHER_TOOL], [{"type": "function", "name": "f"}], [{"type": "web_search"}]],
    "tool_choice": ["auto", "none", "required", {"type": "function", "name": "get_weather"}, {"type": "mcp"}],
    "text": [{"format": {"type": "json_object"}}, {"format": {"type": "json_schema", "name": "p", "schema": {}}}],
    "stream": [True, False],
    "parallel_tool_calls": [False, True],
    "truncation": ["auto", "disabled"],
    "reasoning": [{"effort": None}, {"summary": "auto"}],
    "include": [["reasoning.encrypted_content"], ["message.output_text.logprobs"]],
}


def generated_body(rng: random.Random) -> dict[str, Any]:
    def value(depth: int = 0) -> Any:
        if depth < 2 and rng.random() < 0.3:
            return {rng.choice(KEYS): value(depth + 1) for _ in range(rng.randint(0, 3))}
        if depth < 2 and rng.random() < 0.2:
            return [value(depth + 1) for _ in range(rng.randint(0, 2))]
        return rng.choice(VALUES)

    items = [dict(rng.choice(ITEMS)) for _ in range(rng.randint(1, 4))]
    for item in items:
        if rng.random() < 0.3:  # a field of the item changed, added or removed
            key = rng.choice(KEYS)
            item[key] = value()
            if rng.random() < 0.3:
                del item[key]
    body: dict[str, Any] = {"input": items if rng.random() < 0.8 else value(), "max_output_tokens": 2}
    for name in rng.sample(sorted(FIELDS), rng.randint(0, 4)):
        body[name] = rng.choice(FIELDS[name])
    if rng.random() < 0.3:
        body[rng.choice([*FIELDS, "temperature", "top_p", "max_output_tokens", "model", "store", "colour"])] = value()
    return body


def test_generated_bodies_never_fail_the_server(http: httpx.Client) -> None:
    """Valid and invalid bodies alike get an answer, never a 5xx; a stream that starts ends normally."""
    rng = random.Random(20261207)
    statuses: dict[int, int] = {}
    for _ in range(150):
        body = generated_body(rng)
        response = http.post("/v1/responses", json=body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (body, response.text)
        if response.status_code == 200 and body.get("stream") is True:
            last = [line for line in response.text.splitlines() if line.startswith("event: ")][-1]
            assert last in ("event: response.completed", "event: response.incomplete"), (body, response.text)
        elif response.status_code >= 400:
            assert response.json()["error"]["param"] is not None or response.status_code == 404, response.text
    assert statuses.get(200, 0) >= 10 and statuses.get(400, 0) >= 10, statuses  # both kinds were tried
