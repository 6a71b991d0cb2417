"""Per-sequence sampler chains (llama.cpp's sampler API) built from a request's sampling parameters."""

from __future__ import annotations

import math
import os
from collections.abc import Collection

import llama_cpp

from llm_inference.engines.base import SamplingParams


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


def free_sampler(chain: llama_cpp.llama_sampler_p) -> None:
    llama_cpp.llama_sampler_free(chain)
