"""The tokens a request used, for the caller's token budget (LLM_TOKENS_PER_MINUTE): the surface that admitted
the request sets a meter for it, every generation and embedding adds its prompt + completion tokens as it ends,
and the surface charges them to the caller. The service knows no caller, only the meter of the current request."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator

from llm_inference.engines.base import Chunk


class UsageMeter:
    """Tokens counted and not yet charged."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0

    def add(self, tokens: int) -> None:
        self.pending += max(0, tokens)

    def take(self) -> int:
        taken, self.pending = self.pending, 0
        return taken


# The current request's meter, or None when no token budget applies to it.
current_usage: contextvars.ContextVar[UsageMeter | None] = contextvars.ContextVar("usage", default=None)


def add_usage(tokens: int) -> None:
    meter = current_usage.get()
    if meter is not None:
        meter.add(tokens)


async def metered(chunks: AsyncGenerator[Chunk, None], meter: UsageMeter) -> AsyncGenerator[Chunk, None]:
    """The chunks unchanged; the generation's tokens go to `meter` on its last chunk (before that chunk is passed
    on, so a client that has the answer finds it counted), or when it is closed before one."""
    used: Chunk | None = None
    counted = False
    try:
        async for chunk in chunks:
            used = chunk
            if chunk.finish_reason is not None and not counted:
                counted = True
                meter.add(chunk.prompt_tokens + chunk.completion_tokens)
            yield chunk
    finally:
        if used is not None and not counted:
            meter.add(used.prompt_tokens + used.completion_tokens)
        await chunks.aclose()
