"""The llama.cpp KV cache's size, checked against the memory this process may use (docs/cpu.md "KV memory").

A cell holds one token's keys and values in every layer: layers x KV heads x (K + V head size) x bytes per element.
Two layouts (LLM_KV_CACHE_LAYOUT): `pool`, one pool of cells every sequence draws from, sized by a token budget
whatever the number of concurrent requests; `per-slot`, a stream of a whole context per concurrent request
(slots x context cells), whose greedy outputs never depend on their batch neighbours. What is sized here is
reserved (and touched) at start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

# LLM_KV_CACHE_TYPE -> (ggml type, bytes per element). Block types store 32 elements in the bytes shown.
KV_CACHE_TYPES: dict[str, tuple[int, float]] = {
    "f32": (llama_cpp.GGML_TYPE_F32, 4.0),
    "f16": (llama_cpp.GGML_TYPE_F16, 2.0),
    "bf16": (30, 2.0),  # GGML_TYPE_BF16, which llama_cpp does not name
    "q8_0": (llama_cpp.GGML_TYPE_Q8_0, 34 / 32),
    "q5_1": (llama_cpp.GGML_TYPE_Q5_1, 24 / 32),
    "q5_0": (llama_cpp.GGML_TYPE_Q5_0, 22 / 32),
    "q4_1": (llama_cpp.GGML_TYPE_Q4_1, 20 / 32),
    "q4_0": (llama_cpp.GGML_TYPE_Q4_0, 18 / 32),
    "iq4_nl": (llama_cpp.GGML_TYPE_IQ4_NL, 18 / 32),
}
UNQUANTIZED = ("f32", "f16", "bf16")
# LLM_KV_CACHE_TOKENS unset: a pool of this many tokens (or LLM_CONTEXT_LENGTH, if larger), as Ollama starts its
# models at a few thousand tokens: enough for ten short chats or one long one, and 180 MiB for the embedded model.
DEFAULT_POOL_TOKENS = 8192
POOL_ALIGNMENT = 256  # llama.cpp pads a context's cells to a multiple of 256
MIB = 1 << 20


class KvCacheDoesNotFit(ValueError):
    """A configuration whose KV cache cannot fit the memory limit; the message names the variables to change."""


@dataclass(frozen=True, slots=True)
class MemoryLimit:
    bytes: int
    source: str  # where the figure comes from, for messages: "cgroup memory.max", "physical memory"


@dataclass(frozen=True, slots=True)
class KvPlan:
    layout: str  # "pool" | "per-slot"
    cells: int  # KV cells reserved: the pool, or slots x context
    context_length: int  # the most one sequence may hold
    bytes_per_token: int
    cache_type: str
    limit: MemoryLimit

    @property
    def bytes(self) -> int:
        return self.cells * self.bytes_per_token


def memory_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> MemoryLimit:
    """The memory this process may use: its cgroup's limit (a pod's memory limit; v2 memory.max or v1
    memory.limit_in_bytes), else the machine's physical memory."""
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for name, source in (("memory.max", "cgroup memory.max"), ("memory/memory.limit_in_bytes", "cgroup v1 limit")):
        try:
            text = (cgroup_root / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < physical:  # v1 writes a huge number for "no limit", v2 "max"
            return MemoryLimit(int(text), source)
    return MemoryLimit(physical, "physical memory")


def bytes_per_token(n_layer: int, n_head_kv: int, head_dim_k: int, head_dim_v: int, cache_type: str) -> int:
    """One token's K and V in every layer, in bytes."""
    per_element = KV_CACHE_TYPES[cache_type][1]
    return round(n_layer * n_head_kv * (head_dim_k + head_dim_v) * per_element)


def _aligned(tokens: int) -> int:
    return max(POOL_ALIGNMENT, tokens // POOL_ALIGNMENT * POOL_ALIGNMENT)


def plan_kv(
    *,
    layout: str = "pool",
    slots: int = 1,
    trained_context: int,
    context_length: int | None,
    pool_tokens: int | None,
    cache_type: str,
    per_token: int,
    weights_bytes: int,
    memory_fraction: float,
    limit: MemoryLimit,
) -> KvPlan:
    """The KV cache's cells and one sequence's context, or KvCacheDoesNotFit naming what to change.

    The cache may take LLM_KV_CACHE_MEMORY_FRACTION of the memory limit, and no more than the limit less the
    weights. Pool: an explicit LLM_KV_CACHE_TOKENS is that many cells, refused if they do not fit; unset,
    DEFAULT_POOL_TOKENS (or LLM_CONTEXT_LENGTH if larger) cut down to what fits, refused only if an explicit
    LLM_CONTEXT_LENGTH does not. A sequence gets LLM_CONTEXT_LENGTH, or the model's trained context, at most the
    pool. Per-slot: slots x the context, refused if they do not fit.
    """
    wanted_context = min(context_length or trained_context, trained_context)
    budget = int(min(memory_fraction * limit.bytes, limit.bytes - weights_bytes))
    fits = max(0, budget) // per_token
    limit_text = (
        f"LLM_KV_CACHE_MEMORY_FRACTION={memory_fraction:g} of the memory limit ({limit.bytes / MIB:,.0f} MiB, "
        f"{limit.source}{', less the model weights' if budget < memory_fraction * limit.bytes else ''}) holds "
        f"{max(0, budget) / MIB:,.0f} MiB, {fits:,} tokens at {per_token:,} bytes per token "
        f"(LLM_KV_CACHE_TYPE={cache_type})"
    )
    if layout == "per-slot":
        cells = slots * wanted_context
        if cells > fits:
            raise KvCacheDoesNotFit(
                f"LLM_KV_CACHE_LAYOUT=per-slot needs LLM_MAX_CONCURRENT_REQUESTS={slots} x "
                f"LLM_CONTEXT_LENGTH={context_length or f'unset (the trained {trained_context}'}"
                f"{'' if context_length else ')'} = {cells:,} tokens, {cells * per_token / MIB:,.0f} MiB of KV "
                f"cache, but {limit_text}; use LLM_KV_CACHE_LAYOUT=pool, lower LLM_CONTEXT_LENGTH or "
                "LLM_MAX_CONCURRENT_REQUESTS, choose a smaller LLM_KV_CACHE_TYPE (q8_0 halves it), or raise the "
                "memory limit"
            )
        return KvPlan("per-slot", cells, wanted_context, per_token, cache_type, limit)
    if pool_tokens is not None:
        pool = _aligned(pool_tokens)
        if pool > fits:
            raise KvCacheDoesNotFit(
                f"LLM_KV_CACHE_TOKENS={pool_tokens} needs {pool * per_token / MIB:,.0f} MiB of KV cache, but "
                f"{limit_text}; lower LLM_KV_CACHE_TOKENS, choose a smaller LLM_KV_CACHE_TYPE (q8_0 halves it), "
                "or raise the memory limit"
            )
    else:
        wanted = max(DEFAULT_POOL_TOKENS, context_length or 0)
        pool = _aligned(min(wanted, fits))
        if pool > fits or (context_length is not None and pool < wanted_context):
            raise KvCacheDoesNotFit(
                f"LLM_CONTEXT_LENGTH={context_length or wanted_context} needs "
                f"{wanted_context * per_token / MIB:,.0f} MiB of KV cache for one sequence, but {limit_text}; lower "
                "LLM_CONTEXT_LENGTH, set LLM_KV_CACHE_TOKENS, choose a smaller LLM_KV_CACHE_TYPE, or raise the "
                "memory limit"
            )
    return KvPlan("pool", pool, min(wanted_context, pool), per_token, cache_type, limit)
