"""POST /api/batch/generate: several prompts, one result each, in order."""

from __future__ import annotations

from litestar import post
from litestar.datastructures import State
from litestar.params import JSONBody

from llm_inference.api.http.errors import ErrorDetail
from llm_inference.api.native.docs import ERROR_RESPONSES
from llm_inference.api.native.schemas import BatchGenerateRequest, BatchGenerateResponse, BatchResult
from llm_inference.api.native.translate import sampling_input, usage
from llm_inference.api.shared.vocabulary import token_entries
from llm_inference.service import Failed, Outcome, complete_batch

BATCH_DESCRIPTION = """The prompts run at once, batched by the engine, each with the request's sampling fields.
Each takes its own admission slot: a prompt that finds none (or does not fit the context, or fails) gets
`{"error": {...}}` in its place in `results`, and the others still run. Errors of the whole request (a field,
the model, more prompts than LLM_MAX_BATCH_PROMPTS) answer it as on /api/generate."""


def _result(item: Outcome | Failed, logprobs: bool) -> BatchResult:
    if isinstance(item, Failed):
        return BatchResult(error=ErrorDetail(type=item.type, message=item.message, param=item.param))
    return BatchResult(
        text=item.text,
        finish_reason=item.finish_reason,  # type: ignore[arg-type]
        usage=usage(item.usage),
        logprobs=token_entries(item.logprobs) if logprobs else None,
    )


@post(
    "/api/batch/generate",
    status_code=200,
    responses=ERROR_RESPONSES,
    summary="Generate text from several prompts at once",
    description=BATCH_DESCRIPTION,
    tags=["inference"],
)
async def batch_generate(data: JSONBody[BatchGenerateRequest], state: State) -> BatchGenerateResponse:
    asked = sampling_input(data)
    model, results = await complete_batch(state.service, asked, data.prompts)
    return BatchGenerateResponse(model=model, results=[_result(item, asked.logprobs is not None) for item in results])
