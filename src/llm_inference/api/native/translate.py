"""Translation between the /api surface's own schemas and the service core: requests in, results and stream
items out (our SSE events: delta, done, error)."""

from __future__ import annotations

from typing import Any

from litestar.response import Stream
from msgspec import UNSET, UnsetType

from llm_inference.api.http.errors import ErrorDetail
from llm_inference.api.http.streaming import data_frame, sse_response
from llm_inference.api.native.schemas import (
    AssistantMessage,
    AssistantTurn,
    ChatRequest,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    Message,
    SamplingFields,
    StreamEvent,
    SystemMessage,
    Timings,
    ToolCallEvent,
    ToolMessage,
    Usage,
    UserMessage,
)
from llm_inference.api.shared.schemas import TokenEntry
from llm_inference.api.shared.schemas import ToolCall as ToolCallView
from llm_inference.api.shared.tool_fields import tool_rounds, tools_input
from llm_inference.api.shared.vocabulary import logit_bias_entries, token_entries
from llm_inference.engines.base import ChatMessage, ToolCall
from llm_inference.engines.constraints import OutputConstraint, json_object_constraint, json_schema_constraint
from llm_inference.service import (
    ChatInput,
    Delta,
    Finished,
    GenerationStream,
    InferenceService,
    Outcome,
    Prepared,
    SamplingInput,
    StreamItem,
    ToolCallDelta,
)
from llm_inference.service import Timings as ServiceTimings
from llm_inference.service import Usage as ServiceUsage

INTERNAL_ERROR_FRAME = data_frame(ErrorEvent(ErrorDetail(type="internal_error", message="internal server error")))


def output_constraint(value: str | dict[str, Any] | None) -> OutputConstraint | None:
    if value is None:
        return None
    if isinstance(value, str):
        return json_object_constraint("format")
    return json_schema_constraint(value, "format")


def logprobs_count(body: SamplingFields) -> int | None:
    """How many alternatives each token's log probability comes with; None: no log probabilities. Here (unlike
    OpenAI's API, which refuses it) asking for alternatives asks for the log probabilities too."""
    if body.top_logprobs:
        return body.top_logprobs
    return 0 if body.logprobs else None


def sampling_input(body: SamplingFields) -> SamplingInput:
    return SamplingInput(
        model=body.model,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        seed=body.seed,
        stop=body.stop,
        ignore_eos=body.ignore_eos,
        constraint=output_constraint(body.format),
        logprobs=logprobs_count(body),
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        min_p=body.min_p,
        logit_bias=logit_bias_entries(body.logit_bias),
    )


def logprobs_view(outcome: Outcome, prepared: Prepared) -> list[TokenEntry] | UnsetType:
    """The answer's log probabilities, when the request asked for them."""
    return token_entries(outcome.logprobs) if prepared.request.sampling.logprobs is not None else UNSET


def usage(value: ServiceUsage) -> Usage:
    return Usage(value.prompt_tokens, value.completion_tokens, value.total_tokens)


def timings(value: ServiceTimings) -> Timings:
    return Timings(value.time_to_first_token_seconds, value.total_seconds, value.output_tokens_per_second)


def chat_message(message: Message) -> ChatMessage:
    if isinstance(message, AssistantTurn):
        calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in message.tool_calls or ())
        return ChatMessage("assistant", message.content, calls)
    if isinstance(message, ToolMessage):
        return ChatMessage("tool", message.content, tool_call_id=message.tool_call_id)
    return ChatMessage(message.role, message.content)


def message_view(message: ChatMessage) -> Message:
    if message.role == "assistant":
        calls = [ToolCallView(id=c.id, name=c.name, arguments=c.arguments) for c in message.tool_calls] or None
        return AssistantTurn(content=message.content, tool_calls=calls)
    if message.role == "tool":
        return ToolMessage(content=message.content, tool_call_id=message.tool_call_id or "")
    return SystemMessage(content=message.content) if message.role == "system" else UserMessage(content=message.content)


def chat_messages(messages: list[Message]) -> list[ChatMessage]:
    return [chat_message(m) for m in messages]


def chat_input(body: ChatRequest) -> ChatInput:
    return ChatInput(
        sampling_input(body),
        chat_messages(body.messages),
        truncation=body.truncate,
        session_id=body.session_id,
        tools=tools_input(body.tools, body.tool_choice, body.parallel_tool_calls),
    )


def assistant_message(outcome: Outcome) -> AssistantMessage:
    if not outcome.tool_calls:
        return AssistantMessage(content=outcome.text)
    calls = [ToolCallView(id=c.id, name=c.name, arguments=c.arguments) for c in outcome.tool_calls]
    return AssistantMessage(content=outcome.text, tool_calls=calls)


def stream_event(stream: GenerationStream, item: StreamItem) -> StreamEvent:
    """Our event for a stream item: `delta` per piece of text, then `done` or `error` (SSE and WebSocket).
    A chat's `done` says how many messages `truncate` dropped, and the server-side tool rounds run."""
    if isinstance(item, Delta):
        return DeltaEvent(item.text, token_entries(item.logprobs)) if item.logprobs else DeltaEvent(text=item.text)
    if isinstance(item, ToolCallDelta):
        return ToolCallEvent(index=item.index, arguments=item.arguments, id=item.id, name=item.name)
    if isinstance(item, Finished):
        prepared = stream.prepared
        truncated = prepared.truncated_messages if prepared.operation == "chat" else None
        return DoneEvent(
            prepared.model,
            item.finish_reason,  # type: ignore[arg-type]
            usage(item.usage),
            timings(item.timings),
            truncated_messages=truncated,
            tool_rounds=tool_rounds(item.tool_rounds),
        )
    return ErrorEvent(ErrorDetail(type=item.type, message=item.message, param=item.param))


def event_stream(service: InferenceService, stream: GenerationStream) -> Stream:
    """The stream as our SSE events, then `[DONE]`."""

    def encode(item: StreamItem) -> bytes:
        return data_frame(stream_event(stream, item))

    return sse_response(stream, encode, INTERNAL_ERROR_FRAME, service.settings.sse_ping_seconds)
