"""Embed texts with a model's engine, under the same allow-list, admission and timeout as generation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_inference.errors import RequestTimeout
from llm_inference.service.usage import add_usage

if TYPE_CHECKING:
    from llm_inference.service.core import InferenceService


@dataclass(frozen=True, slots=True)
class Embeddings:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int


class _Record:
    tokens = 0


async def embed(service: InferenceService, model: str | None, texts: Sequence[str]) -> Embeddings:
    service.refuse_if_draining()
    with await service.registry.acquire(model) as lease:
        record = _Record()
        observer = service.observer
        observed = observer.embedding(lease.model, lease.engine, record) if observer else contextlib.nullcontext()
        with service.admission.admit(), observed:
            try:
                async with asyncio.timeout(service.settings.request_timeout_seconds):
                    embedded = await lease.engine.embed(texts)
            except TimeoutError:
                limit = service.settings.request_timeout_seconds
                raise RequestTimeout(f"embedding took longer than LLM_REQUEST_TIMEOUT_SECONDS={limit}") from None
            record.tokens = sum(item.tokens for item in embedded)
            add_usage(record.tokens)
    return Embeddings(lease.model, [item.vector for item in embedded], record.tokens)
