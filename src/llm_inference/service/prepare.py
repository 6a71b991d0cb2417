"""Turn a surface's request into an engine request: defaults and limits from settings, the model's engine,
the chat template, tokenization and the context check. Knows no HTTP and no wire format."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from llm_inference.engines.base import ChatMessage, Engine, GenerationRequest, SamplingParams
from llm_inference.engines.constraints import OutputConstraint
from llm_inference.errors import ContextOverflow, InvalidParameter, UnsupportedParameter
from llm_inference.models.registry import ModelLease
from llm_inference.service.tools import ToolOutputParser, ToolPlan, ToolsInput, plan
from llm_inference.service.truncation import Presenter, Rendered, fit_oldest_first, render
from llm_inference.settings import Settings

if TYPE_CHECKING:
    from llm_inference.service.core import InferenceService


@dataclass(frozen=True, slots=True)
class SamplingInput:
    """What a client asked for, before defaults and limits: every surface translates its fields into this."""

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: str | list[str] | tuple[str, ...] | None = None
    ignore_eos: bool = False
    max_tokens_param: str = "max_tokens"  # the field name the client used (max_completion_tokens on /v1)
    constraint: OutputConstraint | None = None  # structured outputs, already checked against the subset
    # Log probabilities and penalties, as SamplingParams defines them; the surface has checked their ranges.
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    logprobs_param: str = "top_logprobs"  # the field that asked for alternatives, for the limit's error
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    min_p: float | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()  # token ids checked against the model's vocabulary in prepare


@dataclass
class Prepared:
    """A validated request, ready for its engine."""

    model: str
    engine: Engine
    request: GenerationRequest
    operation: str  # "chat" | "text_completion" (GenAI operation names)
    messages: list[ChatMessage] | None = None  # a chat's messages as the template rendered them (after pruning)
    truncated_messages: int = 0  # messages `truncate: "oldest"` dropped to fit the context
    # The hold on the model that keeps it loaded; `complete` or the stream releases it when the request ends.
    lease: ModelLease | None = None
    # A chat's tools: the parser that reads calls out of the answer (None: the answer is plain text).
    tool_plan: ToolPlan | None = None

    def tool_parser(self) -> ToolOutputParser | None:
        """A fresh reader of the answer's tool calls, or None when the answer is plain text."""
        if self.tool_plan is None or self.tool_plan.parser is None:
            return None
        return self.tool_plan.parser()

    def release_model(self) -> None:
        if self.lease is not None:
            self.lease.release()


# What a chat does when its conversation does not leave max_tokens of room in the context: "none" keeps every
# message (the answer is cut at the context's end, and a prompt that alone fills it is refused); "oldest"
# drops the oldest turns first (service/truncation.py). None: the surface offers no choice.
Truncation = Literal["none", "oldest"]


def resolve_sampling(settings: Settings, asked: SamplingInput) -> SamplingParams:
    max_tokens = settings.default_max_tokens if asked.max_tokens is None else asked.max_tokens
    if max_tokens > settings.max_tokens_limit:
        raise InvalidParameter(
            f"{asked.max_tokens_param} {max_tokens} exceeds LLM_MAX_TOKENS_LIMIT={settings.max_tokens_limit}",
            param=asked.max_tokens_param,
        )
    stop = (asked.stop,) if isinstance(asked.stop, str) else tuple(asked.stop or ())
    if len(stop) > settings.max_stop_sequences:
        raise InvalidParameter(
            f"{len(stop)} stop sequences exceed LLM_MAX_STOP_SEQUENCES={settings.max_stop_sequences}",
            param="stop",
        )
    for count in (asked.logprobs, asked.prompt_logprobs):
        if count is not None and count > settings.max_top_logprobs:  # the surface checked count >= 0
            raise InvalidParameter(
                f"{asked.logprobs_param} {count} exceeds LLM_MAX_TOP_LOGPROBS={settings.max_top_logprobs}",
                param=asked.logprobs_param,
            )
    if max_tokens == 0 and asked.prompt_logprobs is None:
        raise InvalidParameter(f"{asked.max_tokens_param}: must be at least 1", param=asked.max_tokens_param)
    if len(asked.logit_bias) > settings.max_logit_bias:
        raise InvalidParameter(
            f"logit_bias has {len(asked.logit_bias)} entries, over LLM_MAX_LOGIT_BIAS={settings.max_logit_bias}",
            param="logit_bias",
        )
    if asked.constraint is not None and asked.ignore_eos:
        # The output ends where the JSON does; going on past it would append text that is not JSON.
        raise UnsupportedParameter(f"ignore_eos: cannot be combined with {asked.constraint.param}", param="ignore_eos")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=settings.default_temperature if asked.temperature is None else asked.temperature,
        top_p=settings.default_top_p if asked.top_p is None else asked.top_p,
        top_k=asked.top_k or 0,
        seed=asked.seed,
        stop=stop,
        ignore_eos=asked.ignore_eos,
        constraint=asked.constraint,
        logprobs=asked.logprobs,
        prompt_logprobs=asked.prompt_logprobs,
        presence_penalty=asked.presence_penalty or 0.0,
        frequency_penalty=asked.frequency_penalty or 0.0,
        repetition_penalty=1.0 if asked.repetition_penalty is None else asked.repetition_penalty,
        min_p=asked.min_p or 0.0,
        logit_bias=asked.logit_bias,
    )


def reject_nul(text: str, param: str) -> None:
    if "\x00" in text:
        raise InvalidParameter(f"{param} must not contain NUL characters", param=param)


def reject_nul_in_message(message: ChatMessage, param: str) -> None:
    reject_nul(message.content, f"{param}.content")
    for index, call in enumerate(message.tool_calls):
        for text in (call.id, call.name, call.arguments):
            reject_nul(text, f"{param}.tool_calls[{index}]")
    if message.tool_call_id is not None:
        reject_nul(message.tool_call_id, f"{param}.tool_call_id")


async def prepare(
    service: InferenceService,
    asked: SamplingInput,
    *,
    prompt: str | None = None,
    messages: list[ChatMessage] | None = None,
    prompt_param: str = "prompt",
    truncation: Truncation | None = None,
    tools: ToolsInput | None = None,
    prompt_tokens: tuple[int, ...] | None = None,
) -> Prepared:
    """`prompt_tokens`: a prompt given as token ids rather than text (OpenAI's completions take both)."""
    service.refuse_if_draining()
    sampling = resolve_sampling(service.settings, asked)
    _check_server_tools(service.settings, tools)
    lease = await service.registry.acquire(asked.model)  # loads the model first if it is not loaded
    try:
        if prompt_tokens is not None:
            prompt = await _prompt_of_tokens(lease.engine, prompt_tokens, prompt_param)
        return await _prepare(
            service, lease, sampling, prompt, messages, prompt_param, truncation, tools, prompt_tokens
        )
    except BaseException:
        lease.release()
        raise


def _check_server_tools(settings: Settings, tools: ToolsInput | None) -> None:
    if tools is None or settings.tool_dispatch_url is not None:
        return
    for index, tool in enumerate(tools.tools):
        if tool.server:
            raise UnsupportedParameter(
                f"tools[{index}].server: server-executed tools are off here (the operator has not set "
                "LLM_TOOL_DISPATCH_URL); leave server out and run the tool yourself",
                param=f"tools[{index}].server",
            )


async def _prepare(
    service: InferenceService,
    lease: ModelLease,
    sampling: SamplingParams,
    prompt: str | None,
    messages: list[ChatMessage] | None,
    prompt_param: str,
    truncation: Truncation | None,
    tools: ToolsInput | None,
    prompt_tokens: tuple[int, ...] | None = None,
) -> Prepared:
    engine = lease.engine
    _check_logit_bias(sampling, engine.vocab_size())
    truncated_messages = 0
    tool_plan = None
    if messages is not None:
        for index, message in enumerate(messages):
            reject_nul_in_message(message, f"messages[{index}]")
        tool_plan = plan(tools, service.settings.tool_call_format, engine.info().tool_format, sampling.constraint)
        if tool_plan.constraint is not None:
            sampling = dataclasses.replace(sampling, constraint=tool_plan.constraint)
        elif tool_plan.parser is not None and tool_plan.native:
            sampling = dataclasses.replace(sampling, tool_markers=True)
        rendered = await _render_conversation(engine, messages, tool_plan.present, sampling.max_tokens, truncation)
        messages, prompt, tokens = rendered.messages, rendered.prompt, rendered.tokens
        truncated_messages = rendered.dropped_messages
        operation = "chat"
    else:
        assert prompt is not None
        reject_nul(prompt, prompt_param)
        operation = "text_completion"
        tokens = list(prompt_tokens) if prompt_tokens is not None else await engine.tokenize(prompt)
        if len(tokens) >= (context_length := engine.info().context_length):
            raise ContextOverflow(len(tokens), context_length)
    if not tokens:  # an engine cannot start a sequence from nothing
        raise InvalidParameter("the prompt has no tokens for this model", param=prompt_param)
    request = GenerationRequest(
        request_id=uuid.uuid4().hex, prompt=prompt, sampling=sampling, prompt_token_ids=tuple(tokens)
    )
    return Prepared(
        model=lease.model,
        engine=engine,
        request=request,
        operation=operation,
        messages=messages,
        truncated_messages=truncated_messages,
        lease=lease,
        tool_plan=tool_plan if tool_plan is not None and tool_plan.parser is not None else None,
    )


async def _prompt_of_tokens(engine: Engine, tokens: tuple[int, ...], param: str) -> str:
    """The text of a token-id prompt (an echo returns it, traces record it), after checking every id."""
    vocab_size = engine.vocab_size()
    for token in tokens:
        if token >= vocab_size:
            raise InvalidParameter(
                f"{param}: token id {token} is not in the model's vocabulary (0 to {vocab_size - 1})", param=param
            )
    return await engine.detokenize(tokens)


def _check_logit_bias(sampling: SamplingParams, vocab_size: int) -> None:
    for token, _ in sampling.logit_bias:
        if not 0 <= token < vocab_size:
            raise InvalidParameter(
                f"logit_bias: token id {token} is not in the model's vocabulary (0 to {vocab_size - 1})",
                param="logit_bias",
            )


async def _render_conversation(
    engine: Engine,
    messages: list[ChatMessage],
    present: Presenter,
    max_tokens: int,
    truncation: Truncation | None,
) -> Rendered:
    """The conversation through the chat template, pruned if asked. One that leaves the answer no room at all
    is refused; one that leaves less room than max_tokens runs, its answer cut at the context's end
    (finish_reason "length"), as a text prompt's is."""
    context_length = engine.info().context_length
    if truncation == "oldest":
        rendered = await fit_oldest_first(engine, messages, context_length - max_tokens, present)
    else:
        rendered = await render(engine, messages, present=present)
    prompt_tokens = len(rendered.tokens)
    if prompt_tokens < context_length:
        return rendered
    counts = f"the model's context is {context_length} tokens, and max_tokens {max_tokens} would need room beside it"
    if truncation == "oldest":
        reason = (
            f"messages render to {prompt_tokens} prompt tokens even with the {rendered.dropped_messages} oldest "
            f"messages dropped (the system messages and the last user turn are always kept), but {counts}"
        )
    else:
        hint = '; "truncate": "oldest" drops the oldest turns until it fits' if truncation == "none" else ""
        reason = f"messages render to {prompt_tokens} prompt tokens but {counts}{hint}"
    raise ContextOverflow(prompt_tokens, context_length, "messages", message=reason)
