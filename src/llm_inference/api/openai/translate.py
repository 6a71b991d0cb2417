"""OpenAI's request fields onto the service's input: what is honoured, and a 400 naming each field whose value
would change the result but cannot be honoured (never silently ignored)."""

from __future__ import annotations

import re
from typing import Any

from llm_inference.api.openai.schemas import (
    ChatCompletionRequest,
    CommonFields,
    CompletionRequest,
    ContentPart,
    Message,
)
from llm_inference.api.shared.tool_fields import check_message, tools_input
from llm_inference.api.shared.vocabulary import logit_bias_entries
from llm_inference.engines.base import ChatMessage, ToolCall
from llm_inference.engines.constraints import OutputConstraint, json_object_constraint, json_schema_constraint
from llm_inference.errors import InvalidParameter, UnsupportedParameter
from llm_inference.service import SamplingInput
from llm_inference.service.tools import ToolsInput

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# OpenAI's "developer" messages are its newer name for system messages; chat templates know only "system".
TEMPLATE_ROLES = {"developer": "system"}


def refuse(param: str, why: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"{param}: {why}", param=param)


def refuse_set(body: Any, reasons: dict[str, str], neutral: dict[str, tuple[Any, ...]]) -> None:
    """Refuse every field in `reasons` whose value is not one of its neutral values (default: null)."""
    for name, why in reasons.items():
        if getattr(body, name) not in neutral.get(name, (None,)):
            raise refuse(name, why)


_CHAT = {
    "functions": "the legacy functions field is not supported; send tools",
    "function_call": "the legacy function_call field is not supported; send tool_choice",
    "modalities": "only text output is supported",
    "audio": "audio output is not supported",
    "reasoning_effort": "the served models do not reason; leave it out",
    "verbosity": "is not supported; leave it out",
    "web_search_options": "web search is not supported",
}
_COMPLETION = {
    "suffix": "insertion (a suffix) is not supported",
    "best_of": "only best_of=1 is supported",
}
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "best_of": (None, 1),
    "suffix": (None, ""),
    "function_call": (None, "none", "auto"),
    "modalities": (None, ["text"]),
}


_FORMAT_TYPES = ("text", "json_object", "json_schema")
_JSON_SCHEMA_FIELDS = ("name", "schema", "strict", "description")


def _check_fields(value: dict[str, Any], param: str, accepted: tuple[str, ...]) -> None:
    for key in value:
        if key not in accepted:
            raise InvalidParameter(
                f"{param}.{key}: unknown field; accepted fields are {', '.join(accepted)}", param=f"{param}.{key}"
            )


def _format_type(value: dict[str, Any], param: str) -> str:
    kind = value.get("type")
    if kind is None:
        raise InvalidParameter(f"{param}.type: is required", param=f"{param}.type")
    if kind not in _FORMAT_TYPES:
        raise refuse(f"{param}.type", f"{kind!r} is not supported; supported are " + ", ".join(_FORMAT_TYPES))
    return str(kind)


def _named_schema(spec: dict[str, Any], param: str) -> OutputConstraint:
    """A json_schema format's name, strict, description and schema (its fields already checked) as a constraint."""
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidParameter(
            f"{param}.name: is required, 1 to 64 letters, digits, underscores or dashes", param=f"{param}.name"
        )
    for key, kinds, rule in (
        ("strict", (bool, type(None)), "true or false"),
        ("description", (str, type(None)), "a string"),
    ):
        if not isinstance(spec.get(key), kinds):
            raise InvalidParameter(f"{param}.{key}: must be {rule}", param=f"{param}.{key}")
    if "schema" not in spec:  # OpenAI's schema is optional: without one, any JSON object
        return json_object_constraint(param)
    return json_schema_constraint(spec["schema"], f"{param}.schema")


def response_format(value: dict[str, Any] | None) -> OutputConstraint | None:
    """OpenAI's response_format as a constraint: text (none), json_object, or json_schema with the schema checked
    against the supported subset (engines/constraints.py). `strict` false is enforced all the same."""
    if value is None:
        return None
    param = "response_format"
    kind = _format_type(value, param)
    _check_fields(value, param, ("type", "json_schema"))
    if kind != "json_schema":
        if "json_schema" in value:
            raise InvalidParameter(
                f"{param}.json_schema: only goes with type json_schema", param=f"{param}.json_schema"
            )
        return None if kind == "text" else json_object_constraint(param)
    spec = value.get("json_schema")
    param = f"{param}.json_schema"
    if not isinstance(spec, dict):
        raise InvalidParameter(f"{param}: is required with type json_schema, as an object", param=param)
    _check_fields(spec, param, _JSON_SCHEMA_FIELDS)
    return _named_schema(spec, param)


def text_format(value: dict[str, Any] | None, param: str = "text.format") -> OutputConstraint | None:
    """The Responses API's `text.format`: response_format's three types, a json_schema's fields beside its type
    (not under a `json_schema` key)."""
    if value is None:
        return None
    kind = _format_type(value, param)
    if kind != "json_schema":
        _check_fields(value, param, ("type",))
        return None if kind == "text" else json_object_constraint(param)
    _check_fields(value, param, ("type", *_JSON_SCHEMA_FIELDS))
    return _named_schema(value, param)


def _sampling(
    body: CommonFields,
    max_tokens: int | None,
    max_tokens_param: str,
    constraint: OutputConstraint | None,
    logprobs: int | None,
    prompt_logprobs: int | None = None,
    logprobs_param: str = "top_logprobs",
) -> SamplingInput:
    return SamplingInput(
        model=body.model,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        seed=body.seed,
        stop=body.stop,
        ignore_eos=body.ignore_eos,
        max_tokens_param=max_tokens_param,
        constraint=constraint,
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        logprobs_param=logprobs_param,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        min_p=body.min_p,
        logit_bias=logit_bias_entries(body.logit_bias),
    )


def _content(content: str | list[ContentPart] | None, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part_index, part in enumerate(content):
        param = f"messages[{index}].content[{part_index}]"
        if part.type != "text":
            raise refuse(f"{param}.type", f"{part.type!r} content is not supported; only text parts are")
        if part.text is None:
            raise InvalidParameter(f"{param}.text: is required", param=f"{param}.text")
        texts.append(part.text)
    # Parts are separate pieces of one turn: a newline keeps their words apart, as vLLM joins them.
    return "\n".join(texts)


def _message(message: Message, index: int) -> ChatMessage:
    param = f"messages[{index}]"
    if message.function_call is not None:
        raise refuse(f"{param}.function_call", "the legacy function_call is not supported; send tool_calls")
    check_message(param, message.role, bool(message.tool_calls), message.tool_call_id, message.content is not None)
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ())
    return ChatMessage(
        role=TEMPLATE_ROLES.get(message.role, message.role),
        content=_content(message.content, index),
        tool_calls=calls,
        tool_call_id=message.tool_call_id,
        name=message.name,
    )


def _chat_logprobs(body: ChatCompletionRequest) -> int | None:
    if body.logprobs:
        return body.top_logprobs or 0
    if body.top_logprobs:  # 0 alternatives without logprobs asks for nothing, as OpenAI takes it
        raise InvalidParameter("top_logprobs: needs logprobs set to true", param="top_logprobs")
    return None


def chat_input(body: ChatCompletionRequest) -> tuple[SamplingInput, list[ChatMessage], ToolsInput | None]:
    refuse_set(body, _CHAT, _NEUTRAL)
    messages = [_message(message, index) for index, message in enumerate(body.messages)]
    tools = tools_input(body.tools, body.tool_choice, body.parallel_tool_calls)
    constraint = response_format(body.response_format)
    logprobs = _chat_logprobs(body)
    if body.max_completion_tokens is not None:
        if body.max_tokens is not None and body.max_tokens != body.max_completion_tokens:
            raise InvalidParameter(
                "max_tokens: differs from max_completion_tokens; send one of them", param="max_tokens"
            )
        sampling = _sampling(body, body.max_completion_tokens, "max_completion_tokens", constraint, logprobs)
    else:
        sampling = _sampling(body, body.max_tokens, "max_tokens", constraint, logprobs)
    return sampling, messages, tools


# A completions prompt: its text, or its token ids as the client sent them.
CompletionPrompt = str | tuple[int, ...]


def completion_prompts(prompt: str | list[str | int | list[int]]) -> list[CompletionPrompt]:
    """The prompts of a completions request: a string, a list of strings, a list of token ids, or a list of
    such lists; each becomes its own choice (with n, n of them)."""
    if isinstance(prompt, str):
        prompts: list[CompletionPrompt] = [prompt]
    elif prompt and all(isinstance(item, int) for item in prompt):
        prompts = [tuple(item for item in prompt if isinstance(item, int))]
    elif all(isinstance(item, str) for item in prompt):
        prompts = [item for item in prompt if isinstance(item, str)]
    elif all(isinstance(item, list) for item in prompt):
        prompts = [tuple(item) for item in prompt if isinstance(item, list)]
    else:
        raise InvalidParameter(
            "prompt: a list of prompts must be all strings, all token ids, or all lists of token ids", param="prompt"
        )
    if not prompts:
        raise InvalidParameter("prompt: the list of prompts must not be empty", param="prompt")
    for index, item in enumerate(prompts):
        param = "prompt" if len(prompts) == 1 else f"prompt[{index}]"
        if not item:
            raise InvalidParameter(f"{param}: must not be empty", param=param)
        if isinstance(item, tuple) and any(token < 0 for token in item):
            raise InvalidParameter(f"{param}: token ids are not negative", param=param)
    return prompts


def completion_input(body: CompletionRequest) -> tuple[SamplingInput, list[CompletionPrompt]]:
    refuse_set(body, _COMPLETION, _NEUTRAL)
    prompts = completion_prompts(body.prompt)
    # Here logprobs is a count, and 0 still asks for the sampled tokens' log probabilities. With echo, the
    # prompt's tokens are scored too; max_tokens 0 then only scores the prompt (how evaluation harnesses ask).
    prompt_logprobs = body.logprobs if body.echo else None
    if body.max_tokens == 0:
        if not body.echo:
            raise InvalidParameter("max_tokens: 0 is allowed only with echo", param="max_tokens")
        prompt_logprobs = prompt_logprobs or 0  # nothing is generated: the engine only reads the prompt
    sampling = _sampling(
        body,
        body.max_tokens,
        "max_tokens",
        response_format(body.response_format),
        body.logprobs,
        prompt_logprobs,
        "logprobs",
    )
    return sampling, prompts
