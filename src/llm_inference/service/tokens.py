"""Tokenize and detokenize with a model's own tokenizer: what the model sees of a text or a conversation, and
the text of token ids. No admission slot: neither runs the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_inference.engines.base import ChatMessage
from llm_inference.errors import InvalidParameter
from llm_inference.service.prepare import reject_nul, reject_nul_in_message
from llm_inference.service.tools import plan

if TYPE_CHECKING:
    from llm_inference.service.core import InferenceService


@dataclass(frozen=True, slots=True)
class Tokenized:
    model: str
    tokens: list[int]
    context_length: int


@dataclass(frozen=True, slots=True)
class Detokenized:
    model: str
    text: str


async def tokenize(
    service: InferenceService,
    model: str | None,
    *,
    text: str | None = None,
    messages: list[ChatMessage] | None = None,
    add_special: bool = True,
) -> Tokenized:
    """A conversation is rendered by the model's chat template first, exactly as `prepare` renders it, so the
    count is the prompt_tokens a generation of the same input reports."""
    if (text is None) == (messages is None):
        raise InvalidParameter("send either text or messages (exactly one of them)", param="text")
    with await service.registry.acquire(model) as lease:
        engine = lease.engine
        if messages is not None:
            for index, message in enumerate(messages):
                reject_nul_in_message(message, f"messages[{index}]")
            # Shown to the template as a generation shows it (earlier tool calls in the model's format).
            shown = plan(None, service.settings.tool_call_format, engine.info().tool_format).present(messages)
            text = await engine.render_chat(*shown)
        else:
            assert text is not None
            reject_nul(text, "text")
        tokens = await engine.tokenize(text, add_special=add_special)
        return Tokenized(lease.model, tokens, engine.info().context_length)


async def detokenize(service: InferenceService, model: str | None, tokens: Sequence[int]) -> Detokenized:
    with await service.registry.acquire(model) as lease:
        vocab_size = lease.engine.vocab_size()
        # An id outside the vocabulary would make llama.cpp read out of bounds: refused before the engine sees it.
        for index, token in enumerate(tokens):
            if not 0 <= token < vocab_size:
                raise InvalidParameter(
                    f"tokens[{index}]: {token} is not a token id of this model (ids are 0 to {vocab_size - 1})",
                    param=f"tokens[{index}]",
                )
        return Detokenized(lease.model, await lease.engine.detokenize(tokens))
