"""What /api and /v1 share of OpenAI's sampling vocabulary: logit_bias as JSON carries it (token ids as string
keys), and a token's log probability as an entry with its bytes and alternatives (OpenAI's chat shape, which
/api answers too)."""

from __future__ import annotations

from collections.abc import Sequence

from llm_inference.api.shared.schemas import TokenEntry, TopLogprob
from llm_inference.engines.base import TokenLogprob
from llm_inference.errors import InvalidParameter


def logit_bias_entries(value: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
    """{"token id": bias} as (id, bias) pairs; the ids are checked against the model's vocabulary later, in
    service.prepare, where the model is known."""
    entries = []
    for key, bias in (value or {}).items():
        if not key.isascii() or not key.isdigit():
            raise InvalidParameter(f"logit_bias: key {key!r} is not a token id (digits only)", param="logit_bias")
        if not -100 <= bias <= 100:
            raise InvalidParameter(f"logit_bias: the bias of token {key} must be from -100 to 100", param="logit_bias")
        entries.append((int(key), bias))
    return tuple(entries)


def token_text(text: bytes) -> str:
    """A token as text; a token that is only part of a UTF-8 character is written as its bytes, the way vLLM
    writes it ("bytes:\\xe2\\x80"), so no entry silently becomes U+FFFD."""
    try:
        return text.decode()
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{byte:02x}" for byte in text)


def token_entries(tokens: Sequence[TokenLogprob]) -> list[TokenEntry]:
    return [
        TokenEntry(
            token_text(entry.text),
            entry.logprob if entry.logprob is not None else 0.0,
            list(entry.text),
            [TopLogprob(token_text(text), logprob, list(text)) for _, text, logprob in entry.top],
        )
        for entry in tokens
    ]
