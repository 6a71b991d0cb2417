"""POST /v1/completions: continue a prompt (OpenAI's legacy completions), whole or as chunks (`stream: true`)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Response, post
from litestar.datastructures import State
from litestar.params import JSONBody

from llm_inference.api.openai.chunks import chunk_stream, completion_id, usage
from llm_inference.api.openai.responses import Completion, TextChoice
from llm_inference.api.openai.schemas import CompletionRequest
from llm_inference.api.openai.translate import completion_input
from llm_inference.service import complete, open_stream, prepare


class CompletionsController(Controller):
    path = "/completions"

    @post("/", status_code=200, summary="Create a completion (OpenAI-compatible)")
    async def create(self, data: JSONBody[CompletionRequest], state: State) -> Response[Any]:
        sampling, prompt = completion_input(data)
        prepared = await prepare(state.service, sampling, prompt=prompt)
        if data.stream:
            include_usage = data.stream_options is not None and data.stream_options.include_usage
            stream = await open_stream(state.service, prepared)
            return chunk_stream(state.service, stream, chat=False, include_usage=include_usage)
        outcome = await complete(state.service, prepared)
        return Response(
            Completion(
                id=completion_id("cmpl", prepared),
                created=int(time.time()),
                model=prepared.model,
                choices=[TextChoice(text=outcome.text, finish_reason=outcome.finish_reason)],
                usage=usage(outcome.usage),
            )
        )
