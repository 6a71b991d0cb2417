"""POST /v1/chat/completions: a conversation, answered whole or as OpenAI's chunks (`stream: true`)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Response, post
from litestar.datastructures import State
from litestar.params import JSONBody
from msgspec import UNSET

from llm_inference.api.openai.chunks import chunk_stream, completion_id, usage
from llm_inference.api.openai.responses import AssistantMessage, ChatChoice, ChatCompletion, FunctionCall, ToolCall
from llm_inference.api.openai.schemas import ChatCompletionRequest
from llm_inference.api.openai.translate import chat_input
from llm_inference.api.tool_fields import tool_rounds
from llm_inference.service import ChatInput, Outcome, complete_chat, open_chat_stream


def assistant_message(outcome: Outcome) -> AssistantMessage:
    if not outcome.tool_calls:
        return AssistantMessage(content=outcome.text)
    calls = [ToolCall(id=c.id, function=FunctionCall(c.name, c.arguments)) for c in outcome.tool_calls]
    return AssistantMessage(content=outcome.text or None, tool_calls=calls)


class ChatCompletionsController(Controller):
    path = "/chat/completions"

    @post("/", status_code=200, summary="Create a chat completion (OpenAI-compatible)")
    async def create(self, data: JSONBody[ChatCompletionRequest], state: State) -> Response[Any]:
        sampling, messages, tools = chat_input(data)
        chat = ChatInput(sampling, messages, truncation=data.truncate, tools=tools)
        if data.stream:
            include_usage = data.stream_options is not None and data.stream_options.include_usage
            stream = await open_chat_stream(state.service, chat)
            truncated = stream.prepared.truncated_messages if data.truncate == "oldest" else UNSET
            return chunk_stream(
                state.service, stream, chat=True, include_usage=include_usage, truncated_messages=truncated
            )
        prepared, outcome = await complete_chat(state.service, chat)
        truncated = prepared.truncated_messages if data.truncate == "oldest" else UNSET
        choice = ChatChoice(message=assistant_message(outcome), finish_reason=outcome.finish_reason)
        return Response(
            ChatCompletion(
                id=completion_id("chatcmpl", prepared),
                created=int(time.time()),
                model=prepared.model,
                choices=[choice],
                usage=usage(outcome.usage),
                truncated_messages=truncated,
                tool_rounds=tool_rounds(outcome.tool_rounds),
            )
        )
