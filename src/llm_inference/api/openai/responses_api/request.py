"""The body of POST /v1/responses, and the input items and tools it holds, as OpenAI defines them.

Every field of OpenAI's request is declared, so that an ordinary client's request decodes; translate.py refuses,
naming it, each one that would change the answer and is not implemented. Input items, tools and an object
tool_choice are decoded here as objects and each is checked by its `type` in translate.py, so that a kind this
service does not serve (an image part, a web_search tool, an item_reference) is refused as such, not reported
as a malformed object.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from llm_inference.api.shared.schemas import FunctionName, MaxTokens, Temperature, TopP

ModelId = Annotated[str, Meta(min_length=1, max_length=512, description="An allowed model id; default if omitted.")]
# Objects checked by their type in translate.py: an input item (a message, a function call or its output), a
# tool, a tool_choice.
Item = dict[str, Any]
CallId = Annotated[str, Meta(min_length=1)]


class StreamOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    include_obfuscation: bool = True  # padding against side channels; nothing here to pad, so no effect


class TextConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # text, json_object or json_schema {name, schema, strict, description} (checked in translate.py)
    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class CreateResponseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    input: str | Annotated[list[Item], Meta(min_length=1)]
    model: ModelId | None = None
    instructions: str | None = None  # a system message before the input
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: Annotated[list[Item], Meta(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | Item | None = None
    parallel_tool_calls: bool | None = None  # false: at most one call per answer
    text: TextConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None  # auto: drop the oldest turns to fit the context
    # Refused unless null or neutral (translate.py): each would change the answer.
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    background: bool | None = None
    background_options: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    context_management: list[dict[str, Any]] | None = None
    moderation: dict[str, Any] | None = None
    # Result-neutral: storage (nothing is stored), billing tier, caching and safety hints, who is asking, a bound
    # on built-in tool calls (none are run), how images in the context are kept (none are accepted).
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: str | None = None
    max_tool_calls: Annotated[int, Meta(ge=1)] | None = None
    access_programs: dict[str, Any] | None = None
    image: dict[str, Any] | None = None


class ContentPart(msgspec.Struct, kw_only=True):
    """One part of a message's content. Only text parts are served (input_text, output_text, and an assistant
    turn's refusal); any other type is refused by name, so the other kinds' keys are not declared."""

    type: Annotated[str, Meta(min_length=1)]
    text: str | None = None
    refusal: str | None = None


class MessageItem(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A message: the short form ({role, content}) or an earlier response's output message replayed."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None
    phase: str | None = None


class FunctionCallItem(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A call an earlier response made, replayed in the input."""

    type: Literal["function_call"]
    call_id: CallId
    name: Annotated[str, Meta(min_length=1)]
    arguments: str  # JSON text, as the model wrote it
    id: str | None = None
    status: str | None = None
    namespace: str | None = None
    caller: dict[str, Any] | None = None


class FunctionCallOutputItem(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The result of a call, for the model's next turn."""

    type: Literal["function_call_output"]
    call_id: CallId
    output: str | list[ContentPart]
    id: str | None = None
    status: str | None = None
    name: str | None = None
    namespace: str | None = None
    caller: dict[str, Any] | None = None


class FunctionTool(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A function the model may call, in the Responses API's shape (the chat API nests it under `function`)."""

    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None  # omitted or null: no parameters
    strict: bool | None = None  # calls that must be made are always constrained to the schema
    defer_loading: bool | None = None  # true: loaded by tool search, which is not served
    allowed_callers: list[str] | None = None
    output_schema: dict[str, Any] | None = None  # describes what the function returns; the model is not told


class FunctionChoice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["function"]
    name: FunctionName
