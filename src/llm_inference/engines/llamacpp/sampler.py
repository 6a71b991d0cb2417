"""Per-sequence sampler chains (llama.cpp's sampler API) built from a request's sampling parameters."""

from __future__ import annotations

import os

import llama_cpp

from llm_inference.engines.base import SamplingParams


def build_sampler(params: SamplingParams) -> llama_cpp.llama_sampler_p:
    """Temperature 0 is greedy; otherwise top-k, top-p, temperature, then a seeded draw.

    Each sequence owns its chain (and so its random state), so a seeded request samples the same tokens
    whatever else is in the batch.
    """
    chain: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_chain_init(
        llama_cpp.llama_sampler_chain_default_params()
    )
    try:
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
