"""A chat's answer as a response object: its ids, output items (a message, function calls), status and usage."""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from llm_inference.api.openai.responses_api.bodies import (
    EchoedSettings,
    FunctionCallOutput,
    IncompleteDetails,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseError,
    ResponseObject,
    ResponseStatus,
    ResponseUsage,
)
from llm_inference.service import Outcome, Prepared, Usage


# Ids carry the engine request's id, so a response can be matched with the service's own logs and traces.
def response_id(prepared: Prepared) -> str:
    return f"resp_{prepared.request.request_id}"


def message_id(prepared: Prepared, output_index: int = 0) -> str:
    suffix = f"_{output_index}" if output_index else ""
    return f"msg_{prepared.request.request_id}{suffix}"


def function_call_id(prepared: Prepared, call_index: int) -> str:
    return f"fc_{prepared.request.request_id}_{call_index}"


def response_usage(usage: Usage) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


def status_of(finish_reason: str) -> Literal["completed", "incomplete"]:
    return "incomplete" if finish_reason == "length" else "completed"


def response_object(
    prepared: Prepared,
    settings: EchoedSettings,
    created_at: int,
    status: ResponseStatus,
    output: list[OutputItem],
    usage: Usage | None = None,
    error: ResponseError | None = None,
) -> ResponseObject:
    sampling = prepared.request.sampling
    return ResponseObject(
        id=response_id(prepared),
        created_at=created_at,
        status=status,
        completed_at=int(time.time()) if status == "completed" else None,
        error=error,
        incomplete_details=IncompleteDetails("max_output_tokens") if status == "incomplete" else None,
        model=prepared.model,
        output=output,
        usage=response_usage(usage) if usage is not None else None,
        max_output_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        **msgspec.structs.asdict(settings),
    )


def whole_response(prepared: Prepared, outcome: Outcome, settings: EchoedSettings, created_at: int) -> ResponseObject:
    """The answer as one response object: a message with the text (when there is text, or no call), then one
    function_call item per call. An answer cut by max_output_tokens is incomplete, and so is its last item."""
    status = status_of(outcome.finish_reason)
    output: list[OutputItem] = []
    if outcome.text or not outcome.tool_calls:
        output.append(
            OutputMessage(id=message_id(prepared), status="completed", content=[OutputText(text=outcome.text)])
        )
    for index, call in enumerate(outcome.tool_calls):
        output.append(
            FunctionCallOutput(
                id=function_call_id(prepared, index),
                call_id=call.id,
                name=call.name,
                arguments=call.arguments,
                status="completed",
            )
        )
    if status == "incomplete":
        output[-1] = msgspec.structs.replace(output[-1], status="incomplete")
    return response_object(prepared, settings, created_at, status, output, outcome.usage)
