"""What POST /v1/responses answers: the response object with its output items, and the stream's events, in
OpenAI's shapes (the fields its SDK requires, and the request's settings echoed as OpenAI echoes them)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class OutputText(msgspec.Struct, kw_only=True, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] = msgspec.field(default_factory=list)


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputMessage(msgspec.Struct, kw_only=True, tag_field="type", tag="message"):
    id: str
    status: ItemStatus
    content: list[OutputText]
    role: Literal["assistant"] = "assistant"


class FunctionCallOutput(msgspec.Struct, kw_only=True, tag_field="type", tag="function_call"):
    id: str
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it
    status: ItemStatus


OutputItem = OutputMessage | FunctionCallOutput


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(msgspec.Struct):
    reason: Literal["max_output_tokens"]


class ResponseError(msgspec.Struct):
    code: str  # our error's type, as `code` in the /v1 error body
    message: str


class Reasoning(msgspec.Struct):
    effort: None = None
    summary: None = None


class EchoedTool(msgspec.Struct, kw_only=True, tag_field="type", tag="function"):
    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool


class EchoedText(msgspec.Struct, kw_only=True):
    format: dict[str, Any]
    verbosity: str = "medium"


class EchoedSettings(msgspec.Struct, kw_only=True):
    """The request's settings as every response object of a request repeats them."""

    instructions: str | None
    tools: list[EchoedTool]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    text: EchoedText
    truncation: Literal["auto", "disabled"]
    store: bool
    metadata: dict[str, str]
    user: str | None
    safety_identifier: str | None
    prompt_cache_key: str | None
    max_tool_calls: int | None


ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed"]


class ResponseObject(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    completed_at: int | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str
    output: list[OutputItem]
    usage: ResponseUsage | None = None
    # The sampling actually used: the request's values, or the service's defaults where it left them out.
    max_output_tokens: int
    temperature: float
    top_p: float
    top_logprobs: int = 0
    # The request's settings, echoed.
    instructions: str | None
    tools: list[EchoedTool]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    text: EchoedText
    truncation: Literal["auto", "disabled"]
    store: bool
    metadata: dict[str, str]
    user: str | None
    safety_identifier: str | None
    prompt_cache_key: str | None
    max_tool_calls: int | None
    # What this service never does: run in the background, continue a stored response, reason.
    background: bool = False
    previous_response_id: None = None
    reasoning: Reasoning = msgspec.field(default_factory=Reasoning)
    service_tier: Literal["default"] = "default"


# The stream's events. Each names its type (`type`, also the SSE `event:` line) and ends with its
# sequence_number: events.py writes the text deltas from a template that relies on it coming last.


class ResponseEvent(msgspec.Struct, kw_only=True, tag_field="type"):
    pass


class ResponseCreated(ResponseEvent, tag="response.created"):
    response: ResponseObject
    sequence_number: int


class ResponseInProgress(ResponseEvent, tag="response.in_progress"):
    response: ResponseObject
    sequence_number: int


class ResponseCompleted(ResponseEvent, tag="response.completed"):
    response: ResponseObject
    sequence_number: int


class ResponseIncomplete(ResponseEvent, tag="response.incomplete"):
    response: ResponseObject
    sequence_number: int


class ResponseFailed(ResponseEvent, tag="response.failed"):
    response: ResponseObject
    sequence_number: int


class OutputItemAdded(ResponseEvent, tag="response.output_item.added"):
    output_index: int
    item: OutputItem
    sequence_number: int


class OutputItemDone(ResponseEvent, tag="response.output_item.done"):
    output_index: int
    item: OutputItem
    sequence_number: int


class ContentPartAdded(ResponseEvent, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText
    sequence_number: int


class ContentPartDone(ResponseEvent, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText
    sequence_number: int


class OutputTextDelta(ResponseEvent, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any]
    sequence_number: int


class OutputTextDone(ResponseEvent, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any]
    sequence_number: int


class FunctionCallArgumentsDelta(ResponseEvent, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str
    sequence_number: int


class FunctionCallArgumentsDone(ResponseEvent, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    name: str
    arguments: str
    sequence_number: int
