"""The /v1 response bodies, stream chunks and error body, in OpenAI's shapes.

Fields a chunk carries only sometimes are `UNSET` (left out of the JSON) rather than null: OpenAI's role is
on the first chat chunk only, and `usage` appears (null until the last chunk) only when the client asked
for it with stream_options.include_usage.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from llm_inference.api.openai.logprobs import ChatLogprobs, TextLogprobs
from llm_inference.api.shared.schemas import ToolRound


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str  # JSON text


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(msgspec.Struct, kw_only=True):
    content: str | None  # null when the answer is tool calls alone
    role: Literal["assistant"] = "assistant"
    refusal: None = None
    tool_calls: list[ToolCall] | UnsetType = UNSET  # present only when the model called tools


class ChatChoice(msgspec.Struct):
    message: AssistantMessage
    finish_reason: str
    index: int = 0
    logprobs: ChatLogprobs | None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    truncated_messages: int | UnsetType = UNSET  # extension: only when the request asked `truncate: "oldest"`
    tool_rounds: list[ToolRound] | UnsetType = UNSET  # extension: server-side tool rounds run, when any were
    usage: Usage


class ChunkFunction(msgspec.Struct, omit_defaults=True):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ChunkToolCall(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A piece of a streamed call: the first names it (id, type, function.name), the rest add arguments."""

    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: ChunkFunction


class ChunkDelta(msgspec.Struct, omit_defaults=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET
    tool_calls: list[ChunkToolCall] | UnsetType = UNSET


class ChatChunkChoice(msgspec.Struct):
    delta: ChunkDelta
    finish_reason: str | None = None
    index: int = 0
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None | UnsetType = UNSET
    truncated_messages: int | UnsetType = UNSET  # extension: on the finishing chunk, as on ChatCompletion
    tool_rounds: list[ToolRound] | UnsetType = UNSET  # extension: on the finishing chunk, as on ChatCompletion


class TextChoice(msgspec.Struct):
    text: str
    finish_reason: str | None
    index: int = 0
    logprobs: TextLogprobs | None = None


class Completion(msgspec.Struct, kw_only=True):
    """A text completion; its stream chunks have the same shape (finish_reason null until the last)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None | UnsetType = UNSET


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(msgspec.Struct):
    error: ErrorDetail
