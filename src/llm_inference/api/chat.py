"""POST /api/chat and /api/chat/stream: answer a conversation, rendered by the model's own chat template."""

from __future__ import annotations

from litestar import Controller, post
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.response import Stream

from llm_inference.api.docs import ERROR_RESPONSES, STREAM_DESCRIPTION, STREAM_FLAG_DESCRIPTION
from llm_inference.api.native import chat_messages, event_stream, sampling_input, timings, usage
from llm_inference.api.schemas import AssistantMessage, ChatRequest, ChatResponse
from llm_inference.service import complete, open_stream, prepare


class ChatController(Controller):
    path = "/api/chat"
    tags = ("inference",)

    @post(
        "/",
        status_code=200,
        responses=ERROR_RESPONSES,
        summary="Answer a conversation",
        description=STREAM_FLAG_DESCRIPTION,
    )
    async def chat(self, data: JSONBody[ChatRequest], state: State) -> ChatResponse | Stream:
        prepared = await prepare(state.service, sampling_input(data), messages=chat_messages(data))
        if data.stream:
            return event_stream(state.service, await open_stream(state.service, prepared))
        outcome = await complete(state.service, prepared)
        return ChatResponse(
            model=prepared.model,
            message=AssistantMessage(content=outcome.text),
            finish_reason=outcome.finish_reason,  # type: ignore[arg-type]
            usage=usage(outcome.usage),
            timings=timings(outcome.timings),
        )

    @post(
        "/stream",
        status_code=200,
        responses=ERROR_RESPONSES,
        summary="Answer a conversation, streamed as Server-Sent Events",
        description=STREAM_DESCRIPTION,
        response_description="text/event-stream of delta events, one done event, then `data: [DONE]`",
        media_type="text/event-stream",
    )
    async def chat_stream(self, data: JSONBody[ChatRequest], state: State) -> Stream:
        prepared = await prepare(state.service, sampling_input(data), messages=chat_messages(data))
        return event_stream(state.service, await open_stream(state.service, prepared))
