"""Per-sequence sampler chains (llama.cpp's sampler API) built from a request's sampling parameters, and, for
structured outputs, a grammar that every sampled token must satisfy."""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Collection
from typing import Any

import llama_cpp

from llm_inference.engines.base import SamplingParams
from llm_inference.engines.llamacpp.grammar import CompiledGrammar


def build_sampler(params: SamplingParams, n_vocab: int, end_tokens: Collection[int] = ()) -> llama_cpp.llama_sampler_p:
    """Temperature 0 is greedy; otherwise top-k, top-p, temperature, then a seeded draw.

    Each sequence owns its chain (and so its random state), so a seeded request samples the same tokens
    whatever else is in the batch. With `ignore_eos` the `end_tokens` (end-of-generation and the chat's stop
    tokens) cannot be drawn at all, as llama-server does: a model made to go on past its end would otherwise
    draw them and then the next turn's role header, steps that stream no text and text no one asked for.
    """
    chain: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_chain_init(
        llama_cpp.llama_sampler_chain_default_params()
    )
    try:
        if params.ignore_eos and end_tokens:
            banned = (llama_cpp.llama_logit_bias * len(end_tokens))(
                *(llama_cpp.llama_logit_bias(token, -math.inf) for token in end_tokens)
            )
            llama_cpp.llama_sampler_chain_add(
                chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(end_tokens), banned)
            )
        _add_samplers(chain, params)
    except BaseException:  # the request fails (the decode loop contains it); its chain must not leak
        llama_cpp.llama_sampler_free(chain)
        raise
    return chain


def _add_samplers(chain: llama_cpp.llama_sampler_p, params: SamplingParams) -> None:
    if params.temperature == 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return
    if params.top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(4), "little")
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))


class ConstrainedSampler:
    """Sampling under a grammar: a token the grammar rejects is never drawn, and end-of-generation only once the
    grammar is complete, so the output ends when (and only when) the JSON does.

    Masking the whole vocabulary with the grammar costs about 3 ms per token for a small schema on an idle core
    (bench/structured_grammar.py), a third of a decode step that every stream in the batch waits for. So, as llama.cpp's
    own common sampler does, the token is first drawn without the grammar and only checked against it (one
    candidate, microseconds); only when the grammar rejects it is it drawn again from `masked`, whose chain
    has the grammar first, before top-k/top-p/temperature/the draw (or greedy). Either way the token is one
    the grammar allows, drawn with the masked distribution's probabilities: a token the grammar allows is
    kept with probability p(t), and a rejection redraws from the allowed tokens renormalized.
    """

    def __init__(self, free: llama_cpp.llama_sampler_p, masked: llama_cpp.llama_sampler_p) -> None:
        self.free, self.masked = free, masked
        self.grammar = llama_cpp.llama_sampler_chain_get(masked, 0)
        self._cell: Any = llama_cpp.llama_token_data()
        self._one = llama_cpp.llama_token_data_array(data=ctypes.pointer(self._cell), size=1, selected=-1, sorted=False)
        self._one_ref = ctypes.byref(self._one)

    def sample(self, ctx: Any, row: int) -> int:
        token: int = llama_cpp.llama_sampler_sample(self.free, ctx, row)
        self._cell.id, self._cell.logit, self._one.size, self._one.selected = token, 0.0, 1, -1
        llama_cpp.llama_sampler_apply(self.grammar, self._one_ref)
        if self._cell.logit != -math.inf:
            llama_cpp.llama_sampler_accept(self.grammar, token)
            return token
        masked: int = llama_cpp.llama_sampler_sample(self.masked, ctx, row)  # accepts it into the grammar too
        return masked

    def free_chains(self) -> None:
        llama_cpp.llama_sampler_free(self.free)
        llama_cpp.llama_sampler_free(self.masked)


Sampler = Any  # a llama_sampler_p chain, or a ConstrainedSampler


def build_constrained_sampler(params: SamplingParams, grammar: CompiledGrammar) -> ConstrainedSampler:
    """Takes the grammar's sampler (the masked chain owns it from here on)."""
    free = build_sampler(params, 0)
    masked: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_chain_init(
        llama_cpp.llama_sampler_chain_default_params()
    )
    llama_cpp.llama_sampler_chain_add(masked, grammar.sampler)
    grammar.sampler = None
    try:
        _add_samplers(masked, params)
    except BaseException:
        llama_cpp.llama_sampler_free(masked)
        llama_cpp.llama_sampler_free(free)
        raise
    return ConstrainedSampler(free, masked)


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
