"""Every request, response and stream event of the /api surface, as msgspec Structs (the fields /v1 shares
with it in api/shared/schemas.py, the error body in api/http/errors.py)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from llm_inference.api.http.errors import ErrorDetail
from llm_inference.api.shared.schemas import (
    MaxTokens,
    Seed,
    Stop,
    Temperature,
    TokenEntry,
    ToolCall,
    ToolChoice,
    ToolRounds,
    Tools,
    TopK,
    TopP,
)

ModelId = Annotated[str, Meta(min_length=1, max_length=512, description="An allowed model id; default if omitted.")]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
TopLogprobs = Annotated[
    int,
    Meta(ge=0, le=20, description="Alternatives given with each token's log probability (<= LLM_MAX_TOP_LOGPROBS)."),
]
LogitBias = Annotated[
    dict[str, float],
    Meta(
        description="Token id (as a string) -> bias from -100 (bans it) to 100 (all but forces it), added to its logit."
    ),
]


class SamplingFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: ModelId | None = None
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    seed: Seed | None = None
    stop: Stop | None = None
    ignore_eos: Annotated[
        bool,
        Meta(
            description="Keep generating to max_tokens (benchmarks). On llama.cpp the end-of-sequence tokens are then "
            "never drawn, as in llama-server; vLLM draws them and goes on, as vllm serve does."
        ),
    ] = False
    format: (
        Annotated[
            Literal["json"] | dict[str, Any],
            Meta(
                description='Structured output, as Ollama\'s: "json" for any JSON object, or a JSON Schema the '
                "output will match (the supported subset: docs/structured-outputs.md)."
            ),
        ]
        | None
    ) = None
    logprobs: Annotated[
        bool,
        Meta(
            description="Answer each generated token's log probability (the raw model's, before temperature, "
            "penalties and bias), with top_logprobs alternatives."
        ),
    ] = False
    top_logprobs: TopLogprobs | None = None
    presence_penalty: Annotated[Penalty, Meta(description="Lowers tokens already generated, once each.")] | None = None
    frequency_penalty: (
        Annotated[Penalty, Meta(description="Lowers tokens by how often they were generated.")] | None
    ) = None
    repetition_penalty: (
        Annotated[float, Meta(gt=0, le=2, description="Divides the logits of tokens seen before (1: off).")] | None
    ) = None
    min_p: (
        Annotated[float, Meta(ge=0, le=1, description="Drops tokens less likely than min_p x the most likely.")] | None
    ) = None
    logit_bias: LogitBias | None = None


# What Ollama's clients send: true asks the plain route for the /stream route's answer. The /stream routes
# stream whatever it says.
StreamFlag = Annotated[
    bool, Meta(description="true: answer with Server-Sent Events, as the /stream route does (which ignores it).")
]


class GenerateRequest(SamplingFields, kw_only=True, forbid_unknown_fields=True):
    prompt: Annotated[str, Meta(min_length=1, description="The text to continue.")]
    stream: StreamFlag = False


class BatchGenerateRequest(SamplingFields, kw_only=True, forbid_unknown_fields=True):
    prompts: Annotated[
        list[Annotated[str, Meta(min_length=1)]],
        Meta(min_length=1, description="The texts to continue, run at once (<= LLM_MAX_BATCH_PROMPTS)."),
    ]


class _Turn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, tag_field="role"):
    """A message of a conversation; its `role` says which kind (the fields differ by role)."""

    role: ClassVar[str]


class SystemMessage(_Turn, tag="system"):
    role: ClassVar[str] = "system"
    content: str


class UserMessage(_Turn, tag="user"):
    role: ClassVar[str] = "user"
    content: str


class AssistantTurn(_Turn, tag="assistant"):
    role: ClassVar[str] = "assistant"
    content: Annotated[str, Meta(description="May be left out on a turn that made tool calls.")] = ""
    tool_calls: list[ToolCall] | None = None


class ToolMessage(_Turn, tag="tool"):
    """A function's result, answering one of the previous assistant turn's calls."""

    role: ClassVar[str] = "tool"
    content: str
    tool_call_id: Annotated[str, Meta(min_length=1, description="The id of the call this answers.")]


Message = SystemMessage | UserMessage | AssistantTurn | ToolMessage


class ChatRequest(SamplingFields, kw_only=True, forbid_unknown_fields=True):
    messages: Annotated[
        list[Message],
        Meta(min_length=1, description="The conversation so far; with session_id, the new turn(s) only."),
    ]
    stream: StreamFlag = False
    session_id: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                description="Continue this session: its history goes before `messages`, and the turn with its "
                "answer is added to it once the answer is complete.",
            ),
        ]
        | None
    ) = None
    truncate: Annotated[
        Literal["none", "oldest"],
        Meta(
            description='"oldest": when the conversation leaves less than max_tokens of room in the context, drop '
            "its oldest turns (system messages and the last user turn are kept) until it fits; "
            '`truncated_messages` in the answer counts them. "none": refuse (400) a conversation that fills the '
            "context."
        ),
    ] = "none"
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: Annotated[bool, Meta(description="false: at most one call per answer.")] | None = None


EmbeddingText = Annotated[str, Meta(min_length=1)]


class EmbeddingsRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    input: Annotated[
        EmbeddingText | Annotated[list[EmbeddingText], Meta(min_length=1, max_length=256)],
        Meta(description="A text, or a list of up to 256 texts, to embed."),
    ]
    model: ModelId | None = None


class EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(msgspec.Struct):
    model: str
    embeddings: list[list[float]]  # one per input text, in order, each L2-normalized
    dimensions: int
    usage: EmbeddingsUsage


FinishReasonName = Literal["stop", "length", "tool_calls"]


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(msgspec.Struct):
    time_to_first_token_seconds: float
    total_seconds: float
    output_tokens_per_second: float


Logprobs = Annotated[list[TokenEntry], Meta(description="Each generated token's log probability (when asked).")]


class GenerateResponse(msgspec.Struct):
    model: str
    text: str
    finish_reason: FinishReasonName
    usage: Usage
    timings: Timings
    logprobs: Logprobs | msgspec.UnsetType = msgspec.UNSET  # present only when the request asked


class BatchResult(msgspec.Struct, omit_defaults=True):
    """One prompt's result: text, finish_reason and usage, or error alone."""

    text: str | None = None
    finish_reason: FinishReasonName | None = None
    usage: Usage | None = None
    error: ErrorDetail | None = None
    logprobs: Logprobs | None = None  # when the request asked


class BatchGenerateResponse(msgspec.Struct):
    model: str
    results: list[BatchResult]


class AssistantMessage(msgspec.Struct, kw_only=True):
    content: str
    role: Literal["assistant"] = "assistant"
    tool_calls: list[ToolCall] | msgspec.UnsetType = msgspec.UNSET  # present only when the model called tools


class ChatResponse(msgspec.Struct):
    model: str
    message: AssistantMessage
    finish_reason: FinishReasonName
    usage: Usage
    timings: Timings
    truncated_messages: int = 0  # messages dropped by `truncate: "oldest"`
    tool_rounds: ToolRounds | msgspec.UnsetType = msgspec.UNSET
    logprobs: Logprobs | msgspec.UnsetType = msgspec.UNSET  # present only when the request asked


# Server-Sent Events: every event is `data: <json>\n\n`; the stream ends with `data: [DONE]\n\n`.
class DeltaEvent(msgspec.Struct, tag_field="type", tag="delta"):
    text: str
    logprobs: Logprobs | msgspec.UnsetType = msgspec.UNSET  # the text's tokens, when the request asked


class ToolCallEvent(msgspec.Struct, tag_field="type", tag="tool_call", omit_defaults=True):
    """A piece of call `index`: the first carries its id and name, the others more of its arguments' JSON text."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None


class DoneEvent(msgspec.Struct, tag_field="type", tag="done", omit_defaults=True):
    model: str
    finish_reason: FinishReasonName
    usage: Usage
    timings: Timings
    truncated_messages: int | None = None  # chats only: messages dropped by `truncate: "oldest"`
    tool_rounds: ToolRounds | msgspec.UnsetType = msgspec.UNSET  # chats only


class ErrorEvent(msgspec.Struct, tag_field="type", tag="error"):
    error: ErrorDetail


StreamEvent = DeltaEvent | ToolCallEvent | DoneEvent | ErrorEvent


class TokenizeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Exactly one of text and messages (the service checks; the OpenAPI document says so with oneOf). UNSET
    # rather than None, so that `"text": null` is no third way of leaving a field out.
    text: Annotated[str, Meta(min_length=1, description="The text to tokenize.")] | msgspec.UnsetType = msgspec.UNSET
    messages: (
        Annotated[list[Message], Meta(min_length=1, description="A conversation, rendered by the chat template.")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    model: ModelId | None = None
    add_special: Annotated[
        bool, Meta(description="Add the tokens the model puts around a text (BOS), as generation does.")
    ] = True


class TokenizeResponse(msgspec.Struct):
    model: str
    tokens: list[int]
    count: int
    max_context: int


TokenId = Annotated[int, Meta(ge=0, le=2**31 - 1)]


class DetokenizeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tokens: Annotated[list[TokenId], Meta(description="Token ids of the model's vocabulary.")]
    model: ModelId | None = None


class DetokenizeResponse(msgspec.Struct):
    model: str
    text: str


class CreateSessionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: ModelId | None = None
    system: Annotated[str, Meta(min_length=1, description="A system message the conversation starts with.")] | None = (
        None
    )


class SessionView(msgspec.Struct):
    id: str
    model: str  # the default model of the session's turns
    messages: list[Message]  # the conversation as the model last saw it, then its answer
    created_at: float  # Unix time
    last_used_at: float  # Unix time of creation or of the last turn's end
    expires_at: float  # Unix time after which, unused, it is forgotten (LLM_SESSION_TTL_SECONDS)
    tokens: int  # prompt + answer tokens of the last turn: how much of the context the conversation fills
    truncated_messages: int  # messages dropped over the session's life to fit the context
    busy: bool  # a turn is running


class DownloadProgress(msgspec.Struct):
    bytes_done: int
    bytes_total: int | None  # None until the hub has said the file's size


class ModelCard(msgspec.Struct):
    id: str
    backend: str | None  # None until the model's first load chose one
    backend_reason: str | None
    format: str | None
    context_length: int | None  # known while the model is loaded
    state: Literal["not_loaded", "downloading", "loading", "loaded", "failed"]
    default: bool
    preload: bool  # loaded at start-up (LLM_PRELOAD_MODELS); readiness waits for these only
    in_flight: int  # requests using the model or waiting for it to load
    loads: int  # successful loads since start-up (a reload after an unload counts again)
    last_used: str | None  # when a request last used it, ISO 8601 UTC
    error: str | None = None  # why the last load failed (state "failed")
    download: DownloadProgress | None = None  # state "downloading" of a hub file


class ModelList(msgspec.Struct):
    models: list[ModelCard]
