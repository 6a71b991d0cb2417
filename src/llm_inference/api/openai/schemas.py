"""The /v1 request bodies as OpenAI defines them.

Every field OpenAI documents for these endpoints is declared, so that a client's ordinary request decodes; a
field that would change the result but is not implemented is refused with 400 naming it (translate.py), and
a field nobody defines is refused as unknown, as OpenAI's own API does. `top_k` and `ignore_eos` are
accepted as extensions under the names vLLM's OpenAI server uses.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from llm_inference.api.shared.schemas import MaxTokens, Seed, Stop, Temperature, ToolChoice, Tools, TopK, TopP

ModelId = Annotated[str, Meta(min_length=1, max_length=512, description="An allowed model id.")]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
Choices = Annotated[int, Meta(ge=1, le=128, description="Choices to generate (<= LLM_MAX_CHOICES).")]
# Completions may ask for no new token at all when they only score the prompt (echo with logprobs).
CompletionMaxTokens = Annotated[int, Meta(ge=0, description="Upper bound on generated tokens; 0 only with echo.")]


class StreamOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    include_usage: bool = False
    include_obfuscation: bool = False  # padding against side channels; nothing here to pad, so no effect


class ContentPart(msgspec.Struct, kw_only=True):
    """One part of a message's content. Only `text` parts are served; any other type is refused by name,
    so the part's other keys (image_url, input_audio, file) are not declared."""

    type: Annotated[str, Meta(min_length=1)]
    text: str | None = None


class FunctionCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1)]
    arguments: str  # JSON text, as the model wrote it


class MessageToolCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A call an earlier assistant turn made, replayed in the history."""

    id: Annotated[str, Meta(min_length=1)]
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    # null only on an assistant turn that made tool calls (checked in translate.py)
    content: str | list[ContentPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: Annotated[str, Meta(min_length=1)] | None = None  # a tool message: the call it answers
    function_call: Any | None = None


class CommonFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields both endpoints share."""

    model: ModelId
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    stop: Stop | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Choices | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    # token id (as a string, as JSON keys are) -> bias added to its logit: -100 bans it, +100 all but forces it
    logit_bias: dict[str, float] | None = None  # ranges checked in translate.py, naming the token
    # Result-neutral: who is asking, and what OpenAI would record about it.
    user: str | None = None
    # Extensions (vLLM's names).
    top_k: TopK | None = None
    ignore_eos: bool = False
    # vLLM's extension, which its benchmark client (`vllm bench serve`) always sends, as 1.0.
    repetition_penalty: Annotated[float, Meta(gt=0, le=2)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None  # vLLM's extension, as llama.cpp's server has it


class ChatCompletionRequest(CommonFields, kw_only=True, forbid_unknown_fields=True):
    messages: Annotated[list[Message], Meta(min_length=1, description="The conversation so far.")]
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    functions: list[Any] | None = None
    function_call: Any | None = None
    # text, json_object or json_schema (structured outputs; checked in translate.py)
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    # Result-neutral: storage, billing tier, caching and safety hints, a speculative prediction (latency only).
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    prediction: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None  # false: at most one call per answer
    # Extension (the /api field): drop the oldest turns to fit the context; the answer then carries
    # `truncated_messages` (on the stream's finishing chunk).
    truncate: Literal["none", "oldest"] = "none"


# msgspec allows one array type in a union, so several prompts (a list of strings), a token-id prompt (a list
# of ints) and several of those (a list of lists) are decoded as items of one list; translate.py refuses a
# list that mixes them.
Prompt = str | list[str | int | list[int]]


class CompletionRequest(CommonFields, kw_only=True, forbid_unknown_fields=True):
    prompt: Prompt
    max_tokens: CompletionMaxTokens | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: Choices | None = None
    # Structured outputs (vLLM's extension of the completions API, in the chat endpoint's shape).
    response_format: dict[str, Any] | None = None
