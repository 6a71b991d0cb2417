"""Tokens' log probabilities in OpenAI's two shapes: chat's `logprobs.content` (one entry per token, with its
bytes and its alternatives) and completions' parallel lists (tokens, token_logprobs, top_logprobs,
text_offset)."""

from __future__ import annotations

import codecs
from collections.abc import Sequence

import msgspec

from llm_inference.api.shared.schemas import TokenEntry
from llm_inference.api.shared.vocabulary import token_entries, token_text
from llm_inference.engines.base import TokenLogprob


class ChatLogprobs(msgspec.Struct):
    content: list[TokenEntry]
    refusal: None = None


def chat_logprobs(tokens: Sequence[TokenLogprob]) -> ChatLogprobs:
    return ChatLogprobs(token_entries(tokens))


class TextLogprobs(msgspec.Struct):
    tokens: list[str]
    token_logprobs: list[float | None]
    # Per token: its alternatives and itself (as vLLM answers, so a harness can tell a greedy token), or null
    # for a prompt's first token.
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]  # where each token starts in the choice's text


def text_logprobs(tokens: Sequence[TokenLogprob], offset: int = 0) -> TextLogprobs:
    """`offset`: where the first token starts in the choice's text (after the echoed prompt, for a stream's
    later chunks: the text already sent)."""
    result = TextLogprobs([], [], [], [])
    # Characters, not bytes: a character split over two tokens counts where it completes.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for entry in tokens:
        text = token_text(entry.text)
        result.tokens.append(text)
        result.token_logprobs.append(entry.logprob)
        if entry.logprob is None:
            result.top_logprobs.append(None)
        else:
            top = {token_text(alt): logprob for _, alt, logprob in entry.top}
            top.setdefault(text, entry.logprob)
            result.top_logprobs.append(top)
        result.text_offset.append(offset)
        offset += len(decoder.decode(entry.text))
    return result
