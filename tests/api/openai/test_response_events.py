"""The Responses API's event encoder alone (no model): the events a stream writes for text, for calls after text,
for an empty answer and for a failure after it started, and the per-token fast path."""

from __future__ import annotations

import json
from typing import Any

from llm_inference.api.openai.responses_api.bodies import EchoedSettings, EchoedText, OutputTextDelta
from llm_inference.api.openai.responses_api.events import ResponseEvents, event_frame
from llm_inference.engines.base import GenerationRequest, SamplingParams
from llm_inference.service import Delta, Failed, Finished, Prepared, Timings, ToolCallDelta, Usage

FINISHED = Finished("stop", Usage(3, 2), Timings(0.1, 0.2, 10.0))
SETTINGS = EchoedSettings(
    instructions=None,
    tools=[],
    tool_choice="auto",
    parallel_tool_calls=True,
    text=EchoedText(format={"type": "text"}),
    truncation="disabled",
    store=False,
    metadata={},
    user=None,
    safety_identifier=None,
    prompt_cache_key=None,
    max_tool_calls=None,
)


def encoder() -> ResponseEvents:
    request = GenerationRequest(request_id="abc", prompt="p", sampling=SamplingParams(2, 0.0, 1.0))
    prepared = Prepared(model="m", engine=None, request=request, operation="chat")  # type: ignore[arg-type]
    return ResponseEvents(prepared, SETTINGS)


def events(data: bytes) -> list[Any]:
    """The events of the frames, each checked to name its type on its `event:` line too."""
    parsed = []
    for frame in data.decode().split("\n\n"):
        if not frame:
            continue
        event_line, data_line = frame.split("\n")
        event = json.loads(data_line.removeprefix("data: "))
        assert event_line == "event: " + event["type"]
        parsed.append(event)
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    return parsed


def test_text_is_one_message_item_between_the_lifecycle_events() -> None:
    encode = encoder()
    written = events(encode(Delta("Hel")) + encode(Delta("lo")) + encode(FINISHED))
    assert [e["type"] for e in written] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert written[0]["response"]["status"] == "in_progress" and written[0]["response"]["output"] == []
    assert written[6]["text"] == "Hello" and written[7]["part"]["text"] == "Hello"
    final = written[-1]["response"]
    assert final["id"] == "resp_abc" and final["status"] == "completed"
    assert final["output"] == [
        {
            "type": "message",
            "id": "msg_abc",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}],
            "role": "assistant",
        }
    ]
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["total_tokens"] == 5


def test_a_call_after_text_closes_the_message_and_a_cut_answer_is_incomplete() -> None:
    encode = encoder()
    frames = encode(Delta("Let me look."))
    frames += encode(ToolCallDelta(0, "", "call_1", "get_weather"))
    frames += encode(ToolCallDelta(0, '{"city": '))
    frames += encode(ToolCallDelta(0, '"Par'))
    frames += encode(Finished("length", Usage(3, 9), Timings(0.1, 0.2, 10.0)))
    written = events(frames)
    assert [e["type"] for e in written][5:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    added = written[8]["item"]
    assert (added["type"], added["id"], added["call_id"], added["name"], added["arguments"]) == (
        "function_call",
        "fc_abc_0",
        "call_1",
        "get_weather",
        "",
    )
    assert written[11]["arguments"] == '{"city": "Par' and written[11]["output_index"] == 1
    final = written[-1]["response"]
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [item["status"] for item in final["output"]] == ["completed", "incomplete"]


def test_an_empty_answer_is_still_a_message() -> None:
    written = events(encoder()(FINISHED))
    assert [e["type"] for e in written][2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert written[-1]["response"]["output"][0]["content"][0]["text"] == ""


def test_a_failure_mid_stream_is_a_failed_response_with_the_error() -> None:
    encode = encoder()
    written = events(encode(Delta("x")) + encode(Failed("request_timeout", "generation exceeded the limit")))
    failed = written[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "request_timeout", "message": "generation exceeded the limit"}
    assert failed["response"]["output"][0]["status"] == "incomplete"
    assert failed["response"]["output"][0]["content"][0]["text"] == "x"


def test_a_stream_that_raises_ends_with_a_failed_response_that_tells_nothing_inside() -> None:
    encode = encoder()
    written = events(encode(Delta("x")) + encode.failure_frame())
    assert written[-1]["type"] == "response.failed"
    assert written[-1]["response"]["error"] == {"code": "internal_error", "message": "internal server error"}


def test_the_templated_delta_frame_is_byte_for_byte_the_encoded_event() -> None:
    encode = encoder()
    encode(Delta("first"))  # past the lifecycle events and the item's opening
    texts = ['a "quoted" word', "line\nbreak \\ back", "émoji 🚀 \u0000 \x1f", "</s>", "x" * 300]
    for text in texts:
        number = encode.sequence_number + 1
        expected = event_frame(
            OutputTextDelta(
                item_id="msg_abc",
                output_index=0,
                content_index=0,
                delta=text,
                logprobs=[],
                sequence_number=number,
            )
        )
        assert encode(Delta(text)) == expected
