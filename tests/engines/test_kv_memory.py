"""The KV pool's size: the per-token formula, the memory limit a pod sets, and the plans refused with the variables
to change (model-free; tests/engines/test_llamacpp_kv_pool.py serves real models with them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_inference.engines.llamacpp.kv_memory import (
    DEFAULT_POOL_TOKENS,
    KvCacheDoesNotFit,
    MemoryLimit,
    bytes_per_token,
    memory_limit,
    plan_kv,
)

GIB = 1 << 30
SMOLLM2_135M = 30 * 3 * (64 + 64) * 2  # layers x KV heads x (K + V head size) x f16 bytes: 23,040
LLAMA_31_8B = 32 * 8 * (128 + 128) * 2  # 128 KiB


def plan(**overrides):  # type: ignore[no-untyped-def]
    args = {
        "trained_context": 8192,
        "context_length": None,
        "pool_tokens": None,
        "cache_type": "f16",
        "per_token": SMOLLM2_135M,
        "weights_bytes": 100 << 20,
        "memory_fraction": 0.5,
        "limit": MemoryLimit(4 * GIB, "cgroup memory.max"),
    }
    return plan_kv(**{**args, **overrides})


def test_bytes_per_token_follow_the_formula() -> None:
    assert bytes_per_token(30, 3, 64, 64, "f16") == SMOLLM2_135M
    assert bytes_per_token(32, 8, 128, 128, "f16") == LLAMA_31_8B == 128 << 10
    assert bytes_per_token(32, 8, 128, 128, "q8_0") == 32 * 8 * 256 * 34 // 32  # 34 bytes per block of 32


def test_defaults_give_a_small_pool_and_any_sequence_the_whole_of_it() -> None:
    default = plan()
    assert default.cells == DEFAULT_POOL_TOKENS == default.context_length == 8192
    assert default.bytes == 8192 * SMOLLM2_135M  # 180 MiB, whatever LLM_MAX_CONCURRENT_REQUESTS is
    # A 128k trained context starts at the default pool too: 1 GiB for Llama-3.1-8B, inside a 4 GiB pod's half.
    long = plan(trained_context=131072, per_token=LLAMA_31_8B)
    assert (long.cells, long.context_length, long.bytes) == (8192, 8192, GIB)


def test_a_context_length_larger_than_the_default_pool_grows_it() -> None:
    assert plan(trained_context=131072, context_length=32768).cells == 32768
    # Never more than the model was trained for, per sequence.
    assert plan(context_length=32768).context_length == 8192


def test_an_explicit_pool_is_aligned_and_bounds_the_context() -> None:
    sized = plan(pool_tokens=1000)
    assert (sized.cells, sized.context_length) == (768, 768)


def test_a_small_limit_cuts_the_default_pool() -> None:
    small = plan(per_token=LLAMA_31_8B, limit=MemoryLimit(GIB, "cgroup memory.max"))  # half a GiB: 4096 tokens
    assert small.cells == 4096 and small.context_length == 4096


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"pool_tokens": 131072, "per_token": LLAMA_31_8B}, ["LLM_KV_CACHE_TOKENS=131072", "LLM_KV_CACHE_TYPE"]),
        (
            {"trained_context": 131072, "context_length": 131072, "per_token": LLAMA_31_8B},
            ["LLM_CONTEXT_LENGTH=131072", "LLM_KV_CACHE_TOKENS"],
        ),
        ({"weights_bytes": 5 * GIB}, ["LLM_CONTEXT_LENGTH", "less the model weights"]),
    ],
)
def test_a_pool_that_cannot_fit_is_refused_naming_the_variables(overrides, names) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KvCacheDoesNotFit) as refused:
        plan(**overrides)
    message = str(refused.value)
    for name in [*names, "LLM_KV_CACHE_MEMORY_FRACTION=0.5", "4,096 MiB, cgroup memory.max"]:
        assert name in message, message


def test_the_memory_limit_comes_from_the_cgroup(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(f"{4 * GIB}\n")
    assert memory_limit(tmp_path) == MemoryLimit(4 * GIB, "cgroup memory.max")
    (tmp_path / "memory.max").write_text("max\n")  # no limit: the machine's memory
    assert memory_limit(tmp_path).source == "physical memory"
    (tmp_path / "memory.max").unlink()
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    assert memory_limit(tmp_path) == MemoryLimit(2 * GIB, "cgroup v1 limit")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert memory_limit(tmp_path).source == "physical memory"


def test_per_slot_streams_hold_slots_times_the_context() -> None:
    per_slot = plan(layout="per-slot", slots=10)
    assert (per_slot.cells, per_slot.context_length) == (81920, 8192)  # 1.76 GiB: what main reserved before the pool
    with pytest.raises(KvCacheDoesNotFit) as refused:
        plan(layout="per-slot", slots=10, trained_context=131072, per_token=LLAMA_31_8B)
    for name in ("LLM_KV_CACHE_LAYOUT=per-slot", "LLM_MAX_CONCURRENT_REQUESTS=10", "LLM_CONTEXT_LENGTH=unset", "pool"):
        assert name in str(refused.value), refused.value
