"""The request fields and answer parts both surfaces share (/api and /v1): sampling bounds, tools and the tool
rounds run for them, a token's log probability."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Temperature = Annotated[float, Meta(ge=0, le=2, description="Sampling temperature; 0 is greedy.")]
TopP = Annotated[float, Meta(gt=0, le=1, description="Nucleus sampling probability mass.")]
TopK = Annotated[int, Meta(ge=0, le=1000, description="Sample from the k most likely tokens; 0 disables.")]
MaxTokens = Annotated[int, Meta(ge=1, description="Upper bound on generated tokens (<= LLM_MAX_TOKENS_LIMIT).")]
Seed = Annotated[int, Meta(ge=0, le=2**32 - 1, description="Makes sampling reproducible.")]
Stop = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=256)]] | Annotated[str, Meta(min_length=1, max_length=256)],
    Meta(description="Generation ends before the first occurrence of any of these strings."),
]

FunctionName = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="1 to 64 letters, digits, underscores or dashes.")
]


class FunctionDefinition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: FunctionName
    description: str | None = None
    parameters: (
        Annotated[dict[str, Any], Meta(description="JSON Schema of the arguments object; omitted: no parameters.")]
        | None
    ) = None
    strict: Annotated[
        bool | None, Meta(description="Accepted; calls that must be made are always constrained to the schema.")
    ] = None


class Tool(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A function the model may call, in OpenAI's shape (which Ollama's API shares)."""

    type: Literal["function"]
    function: FunctionDefinition
    server: Annotated[
        bool, Meta(description="Run by the service itself through LLM_TOOL_DISPATCH_URL (docs/tool-calling.md).")
    ] = False


class NamedFunction(msgspec.Struct, forbid_unknown_fields=True):
    name: FunctionName


class NamedToolChoice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Annotated[
    Literal["none", "auto", "required"] | NamedToolChoice,
    Meta(
        description="auto (default with tools): answer or call; required: call one or more; a named function: "
        "call it; none: answer."
    ),
]
Tools = Annotated[list[Tool], Meta(max_length=128, description="Functions the model may call.")]


class ToolCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, Meta(min_length=1)]
    name: Annotated[str, Meta(min_length=1)]
    arguments: Annotated[str, Meta(description="The arguments object as JSON text, as the model wrote it.")]


class ToolResult(msgspec.Struct):
    tool_call_id: str
    content: Annotated[str, Meta(description="What LLM_TOOL_DISPATCH_URL answered, as the tool message's content.")]


class ToolRound(msgspec.Struct):
    """Calls to server-executed tools (`server: true`) that the service ran before the answer, and their results."""

    calls: list[ToolCall]
    results: list[ToolResult]


ToolRounds = Annotated[
    list[ToolRound],
    Meta(description="The server-side tool rounds run before this answer, in order; absent when none ran."),
]


class TopLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int]


class TokenEntry(msgspec.Struct):
    """A generated token, its log probability, its bytes (a token may be part of a UTF-8 character) and the
    most likely tokens at its position (OpenAI's chat shape)."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]
