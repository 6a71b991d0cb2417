"""Several prompts with the same sampling fields, run at once so the engine batches them (llama.cpp's slots,
vLLM's continuous batching). Each prompt is an ordinary request: its own admission slot, timeout and result."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llm_inference.engines.arrivals import expect_arrivals
from llm_inference.errors import InvalidParameter, Overloaded, ServiceError
from llm_inference.service.admission import Slot
from llm_inference.service.generation import Failed, Outcome, complete
from llm_inference.service.prepare import SamplingInput, prepare, resolve_sampling

if TYPE_CHECKING:
    from llm_inference.service.core import InferenceService


async def complete_batch(
    service: InferenceService, asked: SamplingInput, prompts: Sequence[str]
) -> tuple[str, list[Outcome | Failed]]:
    """The model and one result per prompt, in order.

    What concerns the whole request (too many prompts, a sampling field over its limit, an unknown or loading
    model, draining) raises, as for a single request. What concerns one prompt (its length, a NUL, no admission
    slot left, a timeout, an engine failure) becomes that prompt's Failed, and the others still run.
    """
    limit = service.settings.max_batch_prompts
    if len(prompts) > limit:
        raise InvalidParameter(f"{len(prompts)} prompts exceed LLM_MAX_BATCH_PROMPTS={limit}", param="prompts")
    service.refuse_if_draining()
    resolve_sampling(service.settings, asked)
    # The batch's own lease loads the model once and keeps it loaded until every prompt has run.
    with await service.registry.acquire(asked.model) as lease:
        return lease.model, await _run_all(service, asked, prompts)


async def _run_all(service: InferenceService, asked: SamplingInput, prompts: Sequence[str]) -> list[Outcome | Failed]:
    # Every prompt is admitted before any starts, so which ones find a slot does not depend on how fast the
    # others finish: the first ones in order, as many as there are free slots.
    slots = [_admit(service) for _ in prompts]
    runs = [
        _one(service, asked, prompt, index, slot)
        for index, (prompt, slot) in enumerate(zip(prompts, slots, strict=True))
    ]
    expect_arrivals(len(runs))
    try:
        return list(await asyncio.gather(*runs))
    finally:
        # A run cancelled before it started (the batch's task cancelled) never entered its slot. Releasing
        # twice is harmless.
        for slot in slots:
            if isinstance(slot, Slot):
                slot.release()


def _admit(service: InferenceService) -> Slot | Overloaded:
    try:
        return service.admission.admit()
    except Overloaded as exc:
        return exc


async def _one(
    service: InferenceService, asked: SamplingInput, prompt: str, index: int, slot: Slot | Overloaded
) -> Outcome | Failed:
    param = f"prompts[{index}]"
    try:
        if isinstance(slot, Overloaded):
            raise slot
        with slot:  # released here if prepare fails; complete releases it otherwise
            return await complete(service, await prepare(service, asked, prompt=prompt, prompt_param=param), slot)
    except ServiceError as exc:
        # ContextOverflow names `prompt`, the field of a single request; here the prompt has an index.
        return Failed(exc.type, exc.message, param if exc.param == "prompt" else exc.param)
