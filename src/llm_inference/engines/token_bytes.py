"""Each token's own bytes from a Hugging Face tokenizer: what a log probability is reported against, even where the
token is only a piece of a UTF-8 character (which decoding it to text alone would turn into U+FFFD)."""

from __future__ import annotations

import json
import re
from typing import Any

# SentencePiece vocabularies with byte fallback spell a byte that has no piece of its own as <0xE6>.
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE spells each byte as one printable character (bytes_to_unicode); this is the reverse.

    Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, 0x7f-0xa0, 0xad) are moved to
    U+0100 onwards, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet = {chr(byte): byte for byte in printable}
    moved = (byte for byte in range(256) if chr(byte) not in alphabet)
    alphabet.update({chr(256 + index): byte for index, byte in enumerate(moved)})
    return alphabet


def _spelling(tokenizer: Any) -> str:
    """How the vocabulary spells its tokens: "byte_level" (GPT-2, Llama 3, Qwen, SmolLM), "sentencepiece" (▁ for a
    space, <0xNN> byte pieces: Llama 2, Mistral, Gemma) or "unknown" (a tokenizer without a `tokenizers` backend)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return "unknown"
    # The decoder's own description; a Sequence lists its steps (Replace ▁, ByteFallback, Fuse, Strip).
    steps = [json.loads(decoder.__getstate__())]
    while steps:
        step = steps.pop()
        if step.get("type") == "ByteLevel":
            return "byte_level"
        steps.extend(step.get("decoders") or ())
    return "sentencepiece"


class TokenBytes:
    """token id -> its bytes, learnt on first use (a request's tokens and top alternatives, not the vocabulary).

    Byte-level vocabularies map their spelling back through GPT-2's byte alphabet, SentencePiece ones turn ▁ into a
    space and <0xNN> into its byte, as llama.cpp's token_to_piece does for the same vocabularies; added tokens
    (control tokens, chat markers) are their text. A tokenizer of neither kind falls back to decoding the token
    alone, which is right except for pieces of characters."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._spelling = _spelling(tokenizer)
        self._alphabet = byte_level_alphabet()
        self._cache: dict[int, bytes] = {
            int(token): str(added.content).encode() for token, added in tokenizer.added_tokens_decoder.items()
        }

    def __call__(self, token: int) -> bytes:
        found = self._cache.get(token)
        if found is None:
            found = self._cache[token] = self._bytes(token)
        return found

    def _bytes(self, token: int) -> bytes:
        if self._spelling == "unknown":
            return str(self._tokenizer.decode([token], skip_special_tokens=False)).encode()
        spelled = self._tokenizer.convert_ids_to_tokens(token)
        if spelled is None:  # an id past the tokenizer's vocabulary (the model's embedding may be padded)
            return b""
        if self._spelling == "byte_level":
            alphabet = self._alphabet
            # A character outside the alphabet cannot occur in a byte-level token; kept as its UTF-8 if it does.
            return b"".join(bytes((alphabet[c],)) if c in alphabet else c.encode() for c in spelled)
        if match := _BYTE_PIECE.fullmatch(spelled):
            return bytes((int(match.group(1), 16),))
        return str(spelled).replace("▁", " ").encode()
