"""Server-side tool rounds: while a chat's answer calls only tools the request marks `server`, run the calls
(service/tool_dispatch.py), append the assistant turn and one `tool` message per result, and generate again;
at most LLM_MAX_TOOL_ROUNDS rounds, the last generation then with tool_choice `none` so that it answers.

Each generation is prepared and run as any other (its own admission slot and model lease, released before the
tools run, so a slow tool holds no decode slot). An answer that calls any client tool, or that is cut short,
ends the rounds and goes to the client as it is (server calls in it included, not run).

A stream runs its rounds before it returns, so a failing tool is an HTTP error status; the generation that turns
out to be the answer is streamed from the point that is known: at once for the last one (tool_choice `none`),
at its first answer text where an answer excludes calls (the generic format, a call that must be made), at its
first call of a client tool, else (text of a template's own format) once it has ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING

from llm_inference.engines.base import ChatMessage, ToolCall
from llm_inference.errors import ToolDispatchFailed
from llm_inference.service.generation import (
    Delta,
    Failed,
    Finished,
    GenerationStream,
    Outcome,
    StreamItem,
    ToolCallDelta,
    ToolResult,
    ToolRound,
    complete,
    open_stream,
    tool_event,
)
from llm_inference.service.prepare import Prepared, SamplingInput, Truncation, prepare
from llm_inference.service.tools import ToolPlan, ToolsInput, collect

if TYPE_CHECKING:
    from llm_inference.service.core import InferenceService


@dataclasses.dataclass(frozen=True, slots=True)
class Conversation:
    """What each generation of a chat is prepared from: the whole history (a session's before the new turn)."""

    sampling: SamplingInput
    messages: list[ChatMessage]
    truncation: Truncation | None
    tools: ToolsInput | None


class _Rounds:
    """The rounds run so far, and the messages they add to the conversation."""

    def __init__(self, service: InferenceService, conversation: Conversation) -> None:
        self.service, self.conversation = service, conversation
        self.done: list[ToolRound] = []
        self.messages: list[ChatMessage] = []

    async def run(self, text: str, calls: tuple[ToolCall, ...]) -> None:
        results = await _dispatch(self.service, calls)
        self.done.append(ToolRound(calls, results))
        self.messages.append(ChatMessage("assistant", text, calls))
        self.messages += [
            ChatMessage("tool", result.content, tool_call_id=call.id, name=call.name)
            for call, result in zip(calls, results, strict=True)
        ]

    async def prepare_next(self, model: str) -> Prepared:
        chat = self.conversation
        return await prepare(
            self.service,
            dataclasses.replace(chat.sampling, model=model),  # the same model, should the default change
            messages=[*chat.messages, *self.messages],
            truncation=chat.truncation,
            tools=self._tools(),
        )

    def _tools(self) -> ToolsInput | None:
        tools = self.conversation.tools
        if tools is None:
            return None
        if len(self.done) >= self.service.settings.max_tool_rounds:
            return dataclasses.replace(tools, mode="none", function=None)
        if tools.mode in ("required", "function"):  # asked of the first answer: kept, the model would never stop
            return dataclasses.replace(tools, mode="auto", function=None)
        return tools


def _is_round(plan: ToolPlan | None, finish_reason: str, calls: Sequence[ToolCall]) -> bool:
    return (
        plan is not None
        and finish_reason == "tool_calls"
        and bool(calls)
        and all(call.name in plan.server_tools for call in calls)
    )


def _has_server_tools(prepared: Prepared) -> bool:
    return prepared.tool_plan is not None and bool(prepared.tool_plan.server_tools)


async def complete_rounds(
    service: InferenceService, conversation: Conversation, prepared: Prepared
) -> tuple[Prepared, Outcome]:
    """Generate, and while the answer is a server round, run it and generate again; the last generation's
    Prepared and Outcome, the rounds in `Outcome.tool_rounds`."""
    rounds = _Rounds(service, conversation)
    while True:
        outcome = await complete(service, prepared)
        if not _is_round(prepared.tool_plan, outcome.finish_reason, outcome.tool_calls):
            return prepared, dataclasses.replace(outcome, tool_rounds=tuple(rounds.done))
        await rounds.run(outcome.text, outcome.tool_calls)
        prepared = await rounds.prepare_next(prepared.model)


async def open_rounds_stream(
    service: InferenceService, conversation: Conversation, prepared: Prepared
) -> GenerationStream:
    """open_stream with server rounds run first (see the module's note); the rounds ride on its Finished."""
    if not _has_server_tools(prepared):
        return await open_stream(service, prepared)
    rounds = _Rounds(service, conversation)
    while True:
        stream = await open_stream(service, prepared)
        if not _has_server_tools(prepared):  # the last generation: the rounds are over whatever it writes
            return _answer(stream, [], rounds.done)
        try:
            read, round_text, round_calls = await _until_known(stream, prepared.tool_plan)
        except BaseException:
            await stream.aclose()
            raise
        if round_calls is None:
            return _answer(stream, read, rounds.done)
        await stream.aclose()
        await rounds.run(round_text, round_calls)
        prepared = await rounds.prepare_next(prepared.model)


async def _until_known(
    stream: GenerationStream, plan: ToolPlan | None
) -> tuple[list[StreamItem], str, tuple[ToolCall, ...] | None]:
    """Read the stream until it is known whether its answer is a server round: the items read, and (a round)
    the answer's text and calls, or (the client's answer) None."""
    assert plan is not None
    # The generic JSON format is an answer or calls, never both: its first answer text settles it.
    exclusive = plan.constraint is not None
    read: list[StreamItem] = []
    async for item in stream:
        read.append(item)
        if isinstance(item, Finished):
            text, calls = collect(tool_event(i) for i in read if isinstance(i, Delta | ToolCallDelta))
            return read, text, calls if _is_round(plan, item.finish_reason, calls) else None
        if (
            isinstance(item, Failed)
            or (isinstance(item, Delta) and exclusive)
            or (isinstance(item, ToolCallDelta) and item.name is not None and item.name not in plan.server_tools)
        ):
            break
    return read, "", None


def _answer(stream: GenerationStream, read: list[StreamItem], rounds: list[ToolRound]) -> GenerationStream:
    return GenerationStream(stream.prepared, _items(stream, read, tuple(rounds)), stream.aclose)


async def _items(
    stream: GenerationStream, read: list[StreamItem], rounds: tuple[ToolRound, ...]
) -> AsyncGenerator[StreamItem, None]:
    for item in read:
        yield dataclasses.replace(item, tool_rounds=rounds) if isinstance(item, Finished) and rounds else item
    if read and isinstance(read[-1], Finished | Failed):
        return
    async for item in stream:
        yield dataclasses.replace(item, tool_rounds=rounds) if isinstance(item, Finished) and rounds else item


async def _dispatch(service: InferenceService, calls: tuple[ToolCall, ...]) -> tuple[ToolResult, ...]:
    """The round's calls, run at once; the first failure ends the round (the others are cancelled)."""
    dispatcher = service.tool_dispatcher
    assert dispatcher is not None  # prepare() refuses server tools without LLM_TOOL_DISPATCH_URL
    observer = service.observer

    async def one(call: ToolCall) -> ToolResult:
        try:
            content = await dispatcher.dispatch(call)
        except ToolDispatchFailed as exc:
            if observer is not None:
                observer.tool_dispatch(exc.outcome)
            raise
        if observer is not None:
            observer.tool_dispatch("ok")
        return ToolResult(call.id, content)

    tasks = [asyncio.ensure_future(one(call)) for call in calls]
    try:
        return tuple(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
