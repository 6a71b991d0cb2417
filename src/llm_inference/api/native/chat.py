"""POST /api/chat and /api/chat/stream: answer a conversation, rendered by the model's own chat template."""

from __future__ import annotations

from litestar import Controller, post
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.response import Stream

from llm_inference.api.native.docs import CHAT_ERROR_RESPONSES, STREAM_DESCRIPTION, STREAM_FLAG_DESCRIPTION
from llm_inference.api.native.schemas import ChatRequest, ChatResponse
from llm_inference.api.native.translate import (
    assistant_message,
    chat_input,
    event_stream,
    logprobs_view,
    timings,
    usage,
)
from llm_inference.api.shared.tool_fields import tool_rounds
from llm_inference.service import complete_chat, open_chat_stream


class ChatController(Controller):
    path = "/api/chat"
    tags = ("inference",)

    @post(
        "/",
        status_code=200,
        responses=CHAT_ERROR_RESPONSES,
        summary="Answer a conversation",
        description=STREAM_FLAG_DESCRIPTION,
    )
    async def chat(self, data: JSONBody[ChatRequest], state: State) -> ChatResponse | Stream:
        if data.stream:
            return event_stream(state.service, await open_chat_stream(state.service, chat_input(data)))
        prepared, outcome = await complete_chat(state.service, chat_input(data))
        return ChatResponse(
            model=prepared.model,
            message=assistant_message(outcome),
            finish_reason=outcome.finish_reason,  # type: ignore[arg-type]
            usage=usage(outcome.usage),
            timings=timings(outcome.timings),
            truncated_messages=prepared.truncated_messages,
            tool_rounds=tool_rounds(outcome.tool_rounds),
            logprobs=logprobs_view(outcome, prepared),
        )

    @post(
        "/stream",
        status_code=200,
        responses=CHAT_ERROR_RESPONSES,
        summary="Answer a conversation, streamed as Server-Sent Events",
        description=STREAM_DESCRIPTION,
        response_description="text/event-stream of delta events, one done event, then `data: [DONE]`",
        media_type="text/event-stream",
    )
    async def chat_stream(self, data: JSONBody[ChatRequest], state: State) -> Stream:
        return event_stream(state.service, await open_chat_stream(state.service, chat_input(data)))
