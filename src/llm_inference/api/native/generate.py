"""POST /api/generate and /api/generate/stream: continue a prompt."""

from __future__ import annotations

from litestar import Controller, post
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.response import Stream

from llm_inference.api.native.docs import ERROR_RESPONSES, STREAM_DESCRIPTION, STREAM_FLAG_DESCRIPTION
from llm_inference.api.native.schemas import GenerateRequest, GenerateResponse
from llm_inference.api.native.translate import event_stream, logprobs_view, sampling_input, timings, usage
from llm_inference.service import complete, open_stream, prepare


class GenerateController(Controller):
    path = "/api/generate"
    tags = ("inference",)

    @post(
        "/",
        status_code=200,
        responses=ERROR_RESPONSES,
        summary="Generate text from a prompt",
        description=STREAM_FLAG_DESCRIPTION,
    )
    async def generate(self, data: JSONBody[GenerateRequest], state: State) -> GenerateResponse | Stream:
        prepared = await prepare(state.service, sampling_input(data), prompt=data.prompt)
        if data.stream:
            return event_stream(state.service, await open_stream(state.service, prepared))
        outcome = await complete(state.service, prepared)
        return GenerateResponse(
            model=prepared.model,
            text=outcome.text,
            finish_reason=outcome.finish_reason,  # type: ignore[arg-type]
            usage=usage(outcome.usage),
            timings=timings(outcome.timings),
            logprobs=logprobs_view(outcome, prepared),
        )

    @post(
        "/stream",
        status_code=200,
        responses=ERROR_RESPONSES,
        summary="Generate text from a prompt, streamed as Server-Sent Events",
        description=STREAM_DESCRIPTION,
        response_description="text/event-stream of delta events, one done event, then `data: [DONE]`",
        media_type="text/event-stream",
    )
    async def generate_stream(self, data: JSONBody[GenerateRequest], state: State) -> Stream:
        prepared = await prepare(state.service, sampling_input(data), prompt=data.prompt)
        return event_stream(state.service, await open_stream(state.service, prepared))
