"""A Responses API request onto the chat service's input (the same as /v1/chat/completions': messages, tools,
structured output), with a 400 naming each field whose value would change the answer and cannot be honoured;
and the request's settings as its response objects echo them."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, TypeVar

import msgspec
import msgspec.inspect

from llm_inference.api.http.errors import describe_invalid
from llm_inference.api.openai.responses_api.bodies import EchoedSettings, EchoedText, EchoedTool
from llm_inference.api.openai.responses_api.request import (
    ContentPart,
    CreateResponseRequest,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    FunctionTool,
    MessageItem,
)
from llm_inference.api.openai.translate import TEMPLATE_ROLES, refuse, refuse_set, text_format
from llm_inference.api.shared.schemas import FunctionDefinition, NamedFunction, NamedToolChoice, Tool, ToolChoice
from llm_inference.api.shared.tool_fields import tools_input
from llm_inference.engines.base import ChatMessage, ToolCall
from llm_inference.errors import InvalidParameter
from llm_inference.service import ChatInput, SamplingInput, Truncation
from llm_inference.service.prepare import reject_nul
from llm_inference.service.tools import ToolsInput

T = TypeVar("T")

_NOT_STORED = "responses are not stored here; send the whole conversation as input"
_REFUSED = {
    "previous_response_id": _NOT_STORED,
    "conversation": _NOT_STORED,
    "prompt": "stored prompt templates are not supported; send instructions and input",
    "background": "background responses are not supported",
    "background_options": "background responses are not supported",
    "top_logprobs": "log probabilities are not supported",
    "context_management": "context compaction is not supported",
    "moderation": "moderation is not supported",
}
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "background": (None, False),
    "top_logprobs": (None, 0),
    "context_management": (None, []),
}
_TEXT_PARTS = {"input_text", "output_text"}


def _convert(value: Any, kind: type[T], param: str) -> T:
    """`value` (an object of the body) as `kind`, or a 400 naming the field below `param` that breaks its rule,
    worded as for the body's own fields (api/http/errors.py)."""
    try:
        return msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as exc:
        _, message, where = describe_invalid(msgspec.inspect.type_info(kind), str(exc))
        if where and message.startswith(where):
            full, message = f"{param}.{where}", f"{param}.{message}"
        else:
            full, message = param, f"{param}: {message}"
        raise InvalidParameter(message, param=full) from None


def _text(content: str | list[ContentPart], param: str, allowed: set[str]) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if part.type == "refusal" and "refusal" in allowed:
            text = part.refusal
            field = "refusal"
        elif part.type in allowed:
            text, field = part.text, "text"
        else:
            kinds = ", ".join(sorted(allowed))
            raise refuse(f"{where}.type", f"{part.type!r} content is not supported; only text parts are ({kinds})")
        if text is None:
            raise InvalidParameter(f"{where}.{field}: is required", param=f"{where}.{field}")
        texts.append(text)
    # Parts are separate pieces of one turn: a newline keeps their words apart, as the chat endpoint joins them.
    return "\n".join(texts)


def _messages(items: str | list[dict[str, Any]], instructions: str | None) -> list[ChatMessage]:
    """The conversation, each text checked for NUL characters here so that a refusal names the request's field
    (the service would name its own `messages[i]`)."""
    messages = []
    if instructions:
        reject_nul(instructions, "instructions")
        messages.append(ChatMessage("system", instructions))
    if isinstance(items, str):
        reject_nul(items, "input")
        return [*messages, ChatMessage("user", items)]
    for index, item in enumerate(items):
        param = f"input[{index}]"
        kind = item.get("type", "message")
        if kind == "message":
            message = _convert(item, MessageItem, param)
            allowed = _TEXT_PARTS | {"refusal"} if message.role == "assistant" else _TEXT_PARTS
            text = _text(message.content, f"{param}.content", allowed)
            reject_nul(text, f"{param}.content")
            messages.append(ChatMessage(TEMPLATE_ROLES.get(message.role, message.role), text))
        elif kind == "function_call":
            call = _convert(item, FunctionCallItem, param)
            for name in ("call_id", "name", "arguments"):
                reject_nul(getattr(call, name), f"{param}.{name}")
            made = ToolCall(call.call_id, call.name, call.arguments)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":  # the calls of one turn follow its text, if any
                messages[-1] = dataclasses.replace(last, tool_calls=(*last.tool_calls, made))
            else:
                messages.append(ChatMessage("assistant", "", (made,)))
        elif kind == "function_call_output":
            result = _convert(item, FunctionCallOutputItem, param)
            text = _text(result.output, f"{param}.output", _TEXT_PARTS)
            reject_nul(result.call_id, f"{param}.call_id")
            reject_nul(text, f"{param}.output")
            messages.append(ChatMessage("tool", text, tool_call_id=result.call_id))
        elif kind == "item_reference":
            raise refuse(f"{param}.type", f"item_reference: {_NOT_STORED}")
        else:
            raise refuse(
                f"{param}.type",
                f"{kind!r} items are not supported; supported are message, function_call, function_call_output",
            )
    return messages


def _tools(body: CreateResponseRequest) -> tuple[list[FunctionTool], ToolsInput | None]:
    functions = []
    for index, item in enumerate(body.tools or ()):
        param = f"tools[{index}]"
        kind = item.get("type")
        if kind != "function":
            raise refuse(
                f"{param}.type",
                f"{kind!r} tools are not supported; only function tools are (the service runs no built-in tools)",
            )
        tool = _convert(item, FunctionTool, param)
        if tool.defer_loading:
            raise refuse(f"{param}.defer_loading", "tool search is not supported; offer the function directly")
        if tool.allowed_callers is not None and "direct" not in tool.allowed_callers:
            raise refuse(f"{param}.allowed_callers", "programmatic tool calling is not supported; allow direct")
        functions.append(tool)
    tools = [
        Tool(
            type="function",
            function=FunctionDefinition(name=t.name, description=t.description, parameters=t.parameters),
        )
        for t in functions
    ]
    choice = _tool_choice(body.tool_choice)
    return functions, tools_input(
        tools, choice, body.parallel_tool_calls, function_param="tools[{}]", choice_name_param="tool_choice.name"
    )


def _tool_choice(value: Literal["none", "auto", "required"] | dict[str, Any] | None) -> ToolChoice | None:
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    if kind != "function":
        raise refuse(
            "tool_choice.type",
            f"{kind!r} is not supported; send none, auto, required or a function {{type: function, name}}",
        )
    choice = _convert(value, FunctionChoice, "tool_choice")
    return NamedToolChoice(type="function", function=NamedFunction(choice.name))


def _check_neutral(body: CreateResponseRequest) -> None:
    refuse_set(body, _REFUSED, _NEUTRAL)
    for key, value in (body.reasoning or {}).items():
        if value is not None and (key, value) != ("effort", "none"):
            raise refuse(f"reasoning.{key}", "the served models do not reason; leave reasoning out")
    for index, value in enumerate(body.include or ()):
        if value == "message.output_text.logprobs":
            raise refuse(f"include[{index}]", "log probabilities are not supported")
    if body.text is not None and body.text.verbosity not in (None, "medium"):
        raise refuse("text.verbosity", "is not supported; leave it out or send medium")


def responses_input(body: CreateResponseRequest) -> tuple[ChatInput, EchoedSettings]:
    """The chat the request asks for, and its settings as the response objects echo them."""
    _check_neutral(body)
    messages = _messages(body.input, body.instructions)
    functions, tools = _tools(body)
    text_format_value = body.text.format if body.text is not None else None
    sampling = SamplingInput(
        model=body.model,
        max_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens_param="max_output_tokens",
        constraint=text_format(text_format_value),
    )
    truncation: Truncation | None = "oldest" if body.truncation == "auto" else None
    chat = ChatInput(sampling, messages, truncation=truncation, tools=tools)
    return chat, _settings(body, functions, text_format_value)


def _settings(
    body: CreateResponseRequest, functions: list[FunctionTool], text_format_value: dict[str, Any] | None
) -> EchoedSettings:
    return EchoedSettings(
        instructions=body.instructions,
        tools=[
            EchoedTool(name=t.name, description=t.description, parameters=t.parameters, strict=t.strict is not False)
            for t in functions
        ],
        tool_choice=body.tool_choice if body.tool_choice is not None else "auto",
        parallel_tool_calls=body.parallel_tool_calls is not False,
        text=EchoedText(
            format=text_format_value or {"type": "text"}, verbosity=(body.text and body.text.verbosity) or "medium"
        ),
        truncation=body.truncation or "disabled",
        store=False,  # whatever the request said: nothing is stored (GET /v1/responses/{id} answers 404)
        metadata=body.metadata or {},
        user=body.user,
        safety_identifier=body.safety_identifier,
        prompt_cache_key=body.prompt_cache_key,
        max_tool_calls=body.max_tool_calls,
    )
