"""Log probabilities from a llama.cpp context's logits rows, for the requests that ask for them (numpy, no copies
of the rows)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from llm_inference.engines.base import TokenLogprob

Row = npt.NDArray[np.float32]


def logits_row(ctx: Any, row: int, n_vocab: int) -> Row:
    """The raw logits a decode left for batch row `row`: a view of llama.cpp's buffer, valid until the next decode."""
    pointer = llama_cpp.llama_get_logits_ith(ctx, row)
    if not pointer:
        raise RuntimeError(f"llama.cpp has no logits for batch row {row}")
    return np.ctypeslib.as_array(pointer, shape=(n_vocab,))


def log_normalizer(logits: Row) -> float:
    """log(sum(exp(logits))), computed stably: the log-softmax of a token is its logit minus this."""
    peak = float(logits.max())
    return peak + float(np.log(np.exp(logits - peak).sum(dtype=np.float64)))


class LogprobReader:
    """Turns logits rows into TokenLogprobs: the log-softmax of the raw row (before temperature, penalties, bias or
    a grammar), the token's own, and its `k` most likely alternatives, most likely first (ties: lower id first,
    the token greedy decoding picks)."""

    def __init__(self, ctx: Any, n_vocab: int, token_bytes: Callable[[int], bytes]) -> None:
        self._ctx, self._n_vocab = ctx, n_vocab
        self._token_bytes = token_bytes

    def token(self, row: int, token: int, k: int) -> TokenLogprob:
        logits = logits_row(self._ctx, row, self._n_vocab)
        normalizer = log_normalizer(logits)
        return TokenLogprob(
            token, self._token_bytes(token), float(logits[token]) - normalizer, self._top(logits, normalizer, k)
        )

    def first(self, token: int) -> TokenLogprob:
        """A prompt's first token: nothing precedes it, so it has no log probability."""
        return TokenLogprob(token, self._token_bytes(token), None)

    def _top(self, logits: Row, normalizer: float, k: int) -> tuple[tuple[int, bytes, float], ...]:
        if k <= 0:
            return ()
        k = min(k, self._n_vocab)
        best = np.argpartition(logits, -k)[-k:]
        best = best[np.lexsort((best, -logits[best]))]
        return tuple((int(t), self._token_bytes(int(t)), float(logits[t]) - normalizer) for t in best)


class TokenBytes:
    """Each token's own bytes, control tokens written out (<|im_end|>), remembered once looked up."""

    def __init__(self, vocab: Any) -> None:
        self._vocab = vocab
        self._known: dict[int, bytes] = {}
        self._buffer = ctypes.create_string_buffer(256)

    def __call__(self, token: int) -> bytes:
        known = self._known.get(token)
        if known is None:
            known = self._known[token] = self._piece(token)
        return known

    def _piece(self, token: int) -> bytes:
        while True:
            n = llama_cpp.llama_token_to_piece(self._vocab, token, self._buffer, len(self._buffer), 0, True)
            if n >= 0:
                return self._buffer.raw[:n]
            self._buffer = ctypes.create_string_buffer(-n)  # too small: llama.cpp says how many bytes it needs
