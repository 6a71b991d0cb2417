"""A chat turn, whole or streamed, with or without a session: a session's history goes before the new
messages, and the turn is recorded in the session only once its answer is complete.

A turn that fails, times out or is cancelled (the client left, a WebSocket cancel) records nothing: the
session stays as it was before the turn, so the client can send the same messages again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from llm_inference.engines.base import ChatMessage
from llm_inference.errors import StateUnavailable
from llm_inference.service.generation import (
    Delta,
    Failed,
    Finished,
    GenerationStream,
    Outcome,
    StreamItem,
    ToolCallDelta,
    Usage,
    tool_event,
)
from llm_inference.service.prepare import (
    Prepared,
    SamplingInput,
    Truncation,
    prepare,
    reject_nul,
    reject_nul_in_message,
)
from llm_inference.service.sessions import Session
from llm_inference.service.tool_rounds import Conversation, complete_rounds, open_rounds_stream
from llm_inference.service.tools import ToolEvent, ToolsInput, collect

if TYPE_CHECKING:
    from llm_inference.service.core import InferenceService


@dataclass(frozen=True, slots=True)
class ChatInput:
    sampling: SamplingInput
    messages: list[ChatMessage]
    truncation: Truncation | None = None
    session_id: str | None = None
    tools: ToolsInput | None = None


async def complete_chat(service: InferenceService, chat: ChatInput) -> tuple[Prepared, Outcome]:
    """The turn's answer, after any server-side tool rounds (service/tool_rounds.py): the last generation's
    Prepared (its messages hold the rounds) and Outcome."""
    conversation, prepared, session = await _prepare(service, chat)
    if session is None:
        return await complete_rounds(service, conversation, prepared)
    try:
        prepared, outcome = await complete_rounds(service, conversation, prepared)
        await _record(
            service, session, prepared, ChatMessage("assistant", outcome.text, outcome.tool_calls), outcome.usage
        )
    finally:
        await service.sessions.end_turn(session)
    return prepared, outcome


async def open_chat_stream(service: InferenceService, chat: ChatInput) -> GenerationStream:
    conversation, prepared, session = await _prepare(service, chat)
    if session is None:
        return await open_rounds_stream(service, conversation, prepared)
    try:
        stream = await open_rounds_stream(service, conversation, prepared)
    except BaseException:
        await service.sessions.end_turn(session)
        raise

    turn = _Turn(service, session)

    async def release() -> None:
        try:
            await stream.aclose()
        finally:
            await turn.end()

    return GenerationStream(stream.prepared, _recording(service, turn, stream), release)


class _Turn:
    """Ends a session's turn once: when its answer is recorded, or when the stream closes without one."""

    def __init__(self, service: InferenceService, session: Session) -> None:
        self.service, self.session, self._ended = service, session, False

    async def end(self) -> None:
        if not self._ended:
            self._ended = True
            await self.service.sessions.end_turn(self.session)


async def _recording(
    service: InferenceService, turn: _Turn, stream: GenerationStream
) -> AsyncGenerator[StreamItem, None]:
    events: list[ToolEvent] = []
    async for item in stream:
        if isinstance(item, Delta | ToolCallDelta):
            events.append(tool_event(item))
        elif isinstance(item, Finished):
            # Before the item is passed on: the generation is complete even if the client leaves now, and a
            # client that sends its next turn as soon as it reads this one's end must find the session free.
            text, calls = collect(events)
            try:
                answer = ChatMessage("assistant", text, calls)
                await _record(service, turn.session, stream.prepared, answer, item.usage)
            except StateUnavailable as exc:  # the shared store: the turn is not recorded, and the client told so
                await turn.end()
                yield Failed(exc.type, exc.message)
                return
            await turn.end()
        yield item


async def _prepare(service: InferenceService, chat: ChatInput) -> tuple[Conversation, Prepared, Session | None]:
    if chat.session_id is None:
        conversation = Conversation(chat.sampling, chat.messages, chat.truncation, chat.tools)
        return conversation, await _prepare_first(service, conversation), None
    for index, message in enumerate(chat.messages):  # named by their index in the request, not the session
        reject_nul_in_message(message, f"messages[{index}]")
    session = await service.sessions.begin_turn(chat.session_id)
    try:
        sampling = chat.sampling
        if sampling.model is None:  # a turn may name another model; the session's own is its default
            sampling = replace(sampling, model=session.model)
        conversation = Conversation(sampling, [*session.messages, *chat.messages], chat.truncation, chat.tools)
        return conversation, await _prepare_first(service, conversation), session
    except BaseException:
        await service.sessions.end_turn(session)
        raise


async def _prepare_first(service: InferenceService, chat: Conversation) -> Prepared:
    return await prepare(service, chat.sampling, messages=chat.messages, truncation=chat.truncation, tools=chat.tools)


async def _record(
    service: InferenceService, session: Session, prepared: Prepared, answer: ChatMessage, usage: Usage
) -> None:
    assert prepared.messages is not None
    await service.sessions.record(session, prepared.messages, answer, usage.total_tokens, prepared.truncated_messages)


async def start_session(service: InferenceService, model: str | None, system: str | None) -> Session:
    """A new session whose turns default to `model` (an allowed one; the default model if None)."""
    if system is not None:
        reject_nul(system, "system")
    return await service.sessions.create(service.registry.entry_for(model).spec.id, system)
