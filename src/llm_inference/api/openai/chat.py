"""POST /v1/chat/completions: a conversation, answered whole or as OpenAI's chunks (`stream: true`)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Response, post
from litestar.datastructures import State
from litestar.params import JSONBody
from msgspec import UNSET

from llm_inference.api.openai.chunks import choices_stream, chunk_stream, completion_id, usage
from llm_inference.api.openai.logprobs import chat_logprobs
from llm_inference.api.openai.responses import AssistantMessage, ChatChoice, ChatCompletion, FunctionCall, ToolCall
from llm_inference.api.openai.schemas import ChatCompletionRequest
from llm_inference.api.openai.translate import chat_input
from llm_inference.api.shared.tool_fields import tool_rounds
from llm_inference.service import ChatInput, Outcome, Usage, complete_chat, open_chat_stream
from llm_inference.service.choices import check_choice_count, choice_sampling, open_all, run_all


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
        n = data.n or 1
        check_choice_count(state.service.settings, n, "n")
        chats = [
            ChatInput(choice_sampling(sampling, index), messages, truncation=data.truncate, tools=tools)
            for index in range(n)
        ]
        if data.stream:
            include_usage = data.stream_options is not None and data.stream_options.include_usage
            if n == 1:
                stream = await open_chat_stream(state.service, chats[0])
                truncated = stream.prepared.truncated_messages if data.truncate == "oldest" else UNSET
                return chunk_stream(
                    state.service, stream, chat=True, include_usage=include_usage, truncated_messages=truncated
                )
            streams = await open_all([open_chat_stream(state.service, chat) for chat in chats])
            opened = streams.streams[0].prepared
            truncated = opened.truncated_messages if data.truncate == "oldest" else UNSET
            prompt_tokens = len(opened.request.prompt_token_ids or ())
            return choices_stream(state.service, streams, True, include_usage, prompt_tokens, truncated)
        results = await run_all([complete_chat(state.service, chat) for chat in chats])
        prepared, first = results[0]
        truncated = prepared.truncated_messages if data.truncate == "oldest" else UNSET
        choices = [
            ChatChoice(
                message=assistant_message(outcome),
                finish_reason=outcome.finish_reason,
                index=index,
                logprobs=chat_logprobs(outcome.logprobs) if sampling.logprobs is not None else None,
            )
            for index, (_, outcome) in enumerate(results)
        ]
        # The prompt is read once for all the choices (they share its KV cells); each choice's answer counts.
        total = Usage(first.usage.prompt_tokens, sum(outcome.usage.completion_tokens for _, outcome in results))
        return Response(
            ChatCompletion(
                id=completion_id("chatcmpl", prepared),
                created=int(time.time()),
                model=prepared.model,
                choices=choices,
                usage=usage(total),
                truncated_messages=truncated,
                tool_rounds=tool_rounds(first.tool_rounds),
            )
        )
