"""Per-sequence sampler chains (llama.cpp's sampler API) built from a request's sampling parameters, and, for
structured outputs, a grammar that every sampled token must satisfy."""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Collection, Sequence
from typing import Any

import llama_cpp
import numpy as np

from llm_inference.engines.base import SamplingParams
from llm_inference.engines.llamacpp.grammar import CompiledGrammar
from llm_inference.engines.llamacpp.logits import logits_row


def build_sampler(
    params: SamplingParams,
    n_vocab: int,
    end_tokens: Collection[int] = (),
    *,
    context: int,
    prompt: Sequence[int] = (),
) -> llama_cpp.llama_sampler_p:
    """Temperature 0 is greedy; otherwise top-k, top-p, temperature, min-p, then a seeded draw. Logit bias and
    penalties come first, so greedy decoding sees them too (as in vLLM).

    Each sequence owns its chain (and so its random state), so a seeded request samples the same tokens
    whatever else is in the batch. With `ignore_eos` the `end_tokens` (end-of-generation and the chat's stop
    tokens) cannot be drawn at all, as llama-server does: a model made to go on past its end would otherwise
    draw them and then the next turn's role header, steps that stream no text and text no one asked for.
    `context` (the tokens a sequence may hold) and `prompt` serve the penalties (_add_penalties).
    A request with neutral parameters gets exactly the samplers it got before they existed.
    """
    chain: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_chain_init(
        llama_cpp.llama_sampler_chain_default_params()
    )
    try:
        biases = [(token, -math.inf) for token in end_tokens] if params.ignore_eos else []
        _add_logit_bias(chain, n_vocab, biases + list(params.logit_bias))
        _add_penalties(chain, params, n_vocab, context, prompt)
        _add_samplers(chain, params)
    except BaseException:  # the request fails (the decode loop contains it); its chain must not leak
        llama_cpp.llama_sampler_free(chain)
        raise
    return chain


def has_penalties(params: SamplingParams) -> bool:
    return params.repetition_penalty != 1 or params.presence_penalty != 0 or params.frequency_penalty != 0


def _add_logit_bias(chain: llama_cpp.llama_sampler_p, n_vocab: int, biases: list[tuple[int, float]]) -> None:
    if not biases:
        return
    entries = (llama_cpp.llama_logit_bias * len(biases))(
        *(llama_cpp.llama_logit_bias(token, bias) for token, bias in biases)
    )
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), entries))


def _add_penalties(
    chain: llama_cpp.llama_sampler_p, params: SamplingParams, n_vocab: int, context: int, prompt: Sequence[int]
) -> None:
    """vLLM's (and OpenAI's) penalties with llama.cpp's penalty sampler, which counts the tokens accepted into it.

    A chain accepts every token it draws, that is the generated tokens; vLLM's repetition penalty also counts the
    prompt's tokens, while presence and frequency count only generated ones. One llama.cpp sampler applies all
    three to the same counts, so the repetition penalty gets a sampler of its own that is first fed the prompt,
    and presence/frequency another that sees only what is generated. Both remember the whole sequence (`context`
    tokens, prompt and output), as vLLM's do. The arithmetic is vLLM's: a repeated token's positive logit is
    divided by the repetition penalty and a negative one multiplied; presence subtracts once per token that
    appeared, frequency once per appearance.
    """
    if params.repetition_penalty != 1:
        repeat = llama_cpp.llama_sampler_init_penalties(n_vocab, context, params.repetition_penalty, 0.0, 0.0)
        llama_cpp.llama_sampler_chain_add(chain, repeat)  # the chain owns it from here on, should the feed fail
        for token in prompt:
            llama_cpp.llama_sampler_accept(repeat, token)
    if params.presence_penalty != 0 or params.frequency_penalty != 0:
        penalties = llama_cpp.llama_sampler_init_penalties(
            n_vocab, context, 1.0, params.frequency_penalty, params.presence_penalty
        )
        llama_cpp.llama_sampler_chain_add(chain, penalties)


def _add_samplers(chain: llama_cpp.llama_sampler_p, params: SamplingParams) -> None:
    if params.temperature == 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return
    if params.top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    if params.min_p > 0:  # after temperature, on the probabilities the draw uses (as vLLM)
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(4), "little")
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))


class ConstrainedSampler:
    """Sampling under a grammar: a token the grammar rejects is never drawn, and end-of-generation only once the
    grammar is complete, so the output ends when (and only when) the JSON does.

    Masking the whole vocabulary with the grammar costs about 3 ms per token for a small schema on an idle core
    (bench/structured_grammar.py), a third of a decode step that every stream in the batch waits for. So, as llama.cpp's
    own common sampler does, the token is first drawn without the grammar and only checked against it (one
    candidate, microseconds); only when the grammar rejects it is it drawn again from `masked`, whose chain
    has the grammar first, before bias, penalties, top-k/top-p/temperature/the draw (or greedy). Either way the
    token is one the grammar allows, drawn with the masked distribution's probabilities: a token the grammar
    allows is kept with probability p(t), and a rejection redraws from the allowed tokens renormalized.

    Penalties remember the tokens their chain accepts, and both chains must remember the same ones, the tokens
    really drawn; drawing from a chain (llama_sampler_sample) accepts its token into it, a rejected one too. So
    with penalties the free draw goes through `candidates` instead, which draws without accepting, and the
    token finally drawn is accepted into both chains.
    """

    def __init__(
        self,
        free: llama_cpp.llama_sampler_p,
        masked: llama_cpp.llama_sampler_p,
        n_vocab: int,
        candidates: Candidates | None = None,
    ) -> None:
        self.free, self.masked = free, masked
        self.grammar = llama_cpp.llama_sampler_chain_get(masked, 0)
        self._candidates = candidates
        # The whole vocabulary as candidates, for draws that must not accept their token yet: the penalties' array,
        # or one made at the first rejection (most constrained sequences never have one, and it is n_vocab cells).
        self._n_vocab = n_vocab
        self._all: Candidates | None = candidates
        self._cell: Any = llama_cpp.llama_token_data()
        self._one = llama_cpp.llama_token_data_array(data=ctypes.pointer(self._cell), size=1, selected=-1, sorted=False)
        self._one_ref = ctypes.byref(self._one)

    def sample(self, ctx: Any, row: int) -> int:
        candidates = self._candidates
        token: int
        if candidates is None:
            token = llama_cpp.llama_sampler_sample(self.free, ctx, row)
        else:
            token = candidates.draw(self.free, ctx, row)
        if self._allows(token):
            if candidates is None:
                llama_cpp.llama_sampler_accept(self.grammar, token)
            else:
                llama_cpp.llama_sampler_accept(self.masked, token)  # the grammar and the masked chain's penalties
                llama_cpp.llama_sampler_accept(self.free, token)
            return token
        token = self._masked_draw(ctx, row)
        if candidates is not None:
            llama_cpp.llama_sampler_accept(self.free, token)
        return token

    def _allows(self, token: int) -> bool:
        """Whether the grammar takes `token` next: the grammar applied to that one candidate (microseconds)."""
        self._cell.id, self._cell.logit, self._one.size, self._one.selected = token, 0.0, 1, -1
        llama_cpp.llama_sampler_apply(self.grammar, self._one_ref)
        return bool(self._cell.logit != -math.inf)

    def _masked_draw(self, ctx: Any, row: int) -> int:
        """A token drawn from the masked chain, accepted into it only once the grammar is seen to take it: a
        token the grammar rejects reaching llama.cpp's grammar kills the process (a C++ exception), so no token
        goes there unchecked. Should what follows the grammar in the chain leave none of the tokens it allows
        drawable, the most likely one it allows is taken."""
        if self._all is None:
            self._all = Candidates(self._n_vocab)
        token = self._all.draw(self.masked, ctx, row)
        if not self._allows(token):
            token = self._all.best_allowed(self.grammar, ctx, row)
        llama_cpp.llama_sampler_accept(self.masked, token)
        return token

    def free_chains(self) -> None:
        llama_cpp.llama_sampler_free(self.free)
        llama_cpp.llama_sampler_free(self.masked)


class Candidates:
    """The whole vocabulary as llama.cpp's candidate array, filled from a logits row: drawing from a chain with it
    applies the chain without accepting the token (llama_sampler_sample does both)."""

    _DTYPE = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

    def __init__(self, n_vocab: int) -> None:
        self._n_vocab = n_vocab
        self._data = (llama_cpp.llama_token_data * n_vocab)()
        self._cells = np.frombuffer(memoryview(self._data).cast("B"), dtype=self._DTYPE)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._pointer = ctypes.cast(self._data, ctypes.POINTER(llama_cpp.llama_token_data))
        self._array = llama_cpp.llama_token_data_array(data=self._pointer, size=n_vocab, selected=-1, sorted=False)
        self._ref = ctypes.byref(self._array)

    def _refill(self, ctx: Any, row: int) -> None:
        # Refilled whole each time: the samplers reorder, shrink and rewrite the array in place (and some point
        # it at a buffer of their own, so the result is read through the array, not this buffer).
        self._cells["id"] = self._ids
        self._cells["logit"] = logits_row(ctx, row, self._n_vocab)
        self._cells["p"] = 0.0
        array = self._array
        array.data = self._pointer  # type: ignore[assignment]  # the binding types the pointer field as an array
        array.size, array.selected, array.sorted = self._n_vocab, -1, False

    def draw(self, chain: llama_cpp.llama_sampler_p, ctx: Any, row: int) -> int:
        self._refill(ctx, row)
        llama_cpp.llama_sampler_apply(chain, self._ref)
        return int(self._array.data[self._array.selected].id)

    def best_allowed(self, grammar: llama_cpp.llama_sampler_p, ctx: Any, row: int) -> int:
        """The most likely token `grammar` allows here; RuntimeError (this sequence fails) if it allows none."""
        self._refill(ctx, row)
        llama_cpp.llama_sampler_apply(grammar, self._ref)  # sets what it rejects to -inf, in place
        logits = self._cells["logit"]
        best = int(np.argmax(logits))
        if logits[best] == -math.inf:
            raise RuntimeError("the output's grammar allows no token here")
        return int(self._cells["id"][best])


Sampler = Any  # a llama_sampler_p chain, or a ConstrainedSampler


def build_constrained_sampler(
    params: SamplingParams, grammar: CompiledGrammar, n_vocab: int, *, context: int, prompt: Sequence[int] = ()
) -> ConstrainedSampler:
    """Takes the grammar's sampler (the masked chain owns it from here on)."""
    free = build_sampler(params, n_vocab, context=context, prompt=prompt)
    masked: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_chain_init(
        llama_cpp.llama_sampler_chain_default_params()
    )
    llama_cpp.llama_sampler_chain_add(masked, grammar.sampler)
    grammar.sampler = None
    try:
        _add_logit_bias(masked, n_vocab, list(params.logit_bias))
        _add_penalties(masked, params, n_vocab, context, prompt)
        _add_samplers(masked, params)
    except BaseException:
        llama_cpp.llama_sampler_free(masked)
        llama_cpp.llama_sampler_free(free)
        raise
    return ConstrainedSampler(free, masked, n_vocab, Candidates(n_vocab) if has_penalties(params) else None)


def sample(sampler: Sampler, ctx: Any, row: int) -> int:
    if isinstance(sampler, ConstrainedSampler):
        return sampler.sample(ctx, row)
    token: int = llama_cpp.llama_sampler_sample(sampler, ctx, row)
    return token


def free_sampler(sampler: Sampler) -> None:
    if isinstance(sampler, ConstrainedSampler):
        sampler.free_chains()
    else:
        llama_cpp.llama_sampler_free(sampler)
