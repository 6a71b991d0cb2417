"""Each engine's own small configuration: what it needs to load a model, and nothing of the service's settings.
models/engine_config.py builds them from Settings, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# LLM_ISQ_TYPE -> vLLM's `quantization` method that quantizes unquantized weights while loading them.
VLLM_ISQ_METHODS = {"fp8": "fp8"}

# LLM_ISQ_TYPE -> the llama.cpp file type (the name of llama_cpp's LLAMA_FTYPE_* constant) that llama.cpp's own
# quantize API writes. Left out: the IQ1/IQ2 types and Q2_K_S, which llama.cpp refuses without an importance
# matrix; the ternary TQ types (BitNet models only) and MXFP4_MOE (mixture-of-experts models only).
LLAMACPP_ISQ_TYPES = {
    name: f"LLAMA_FTYPE_MOSTLY_{name}"
    for name in (
        "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
        "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
        "IQ3_XXS", "IQ3_S", "IQ3_M", "IQ4_NL", "IQ4_XS",
    )
}  # fmt: skip
# The short names llama.cpp's llama-quantize also accepts, for the mix it picks for them.
LLAMACPP_ISQ_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
ISQ_TYPES = {"vllm": tuple(VLLM_ISQ_METHODS), "llamacpp": tuple(LLAMACPP_ISQ_TYPES)}
# LLM_ISQ_TYPE unset: each backend's usual choice (vLLM's only one; llama.cpp's most used size/quality trade).
DEFAULT_ISQ_TYPES = {"vllm": "fp8", "llamacpp": "Q4_K_M"}
BACKEND_NAMES = {"vllm": "vLLM", "llamacpp": "llama.cpp"}


def canonical_isq_type(text: str) -> str | None:
    """The type's canonical spelling (fp8, Q4_K_M; aliases resolved, any case), or None if no backend has it."""
    lowered = {name.lower(): name for backend in ISQ_TYPES.values() for name in backend}
    name = text.strip().lower()
    alias = {a.lower(): target for a, target in LLAMACPP_ISQ_ALIASES.items()}.get(name)
    return alias or lowered.get(name)


def isq_type_problem(backend: str, isq_type: str | None) -> str | None:
    """Why `backend` cannot quantize to `isq_type` while loading, or None when it can (None: the default)."""
    if isq_type is None or isq_type in ISQ_TYPES[backend]:
        return None
    return (
        f"LLM_ISQ_TYPE={isq_type} is not a type {BACKEND_NAMES[backend]} can quantize to while loading; "
        f"{BACKEND_NAMES[backend]} supports {', '.join(ISQ_TYPES[backend])}"
    )


@dataclass(frozen=True, slots=True)
class LlamaCppConfig:
    slots: int  # sequences decoded at once (LLM_MAX_CONCURRENT_REQUESTS)
    context_length: int | None  # per sequence; None: the model's training context
    threads: int | None  # None: every core
    # The KV cache (docs/cpu.md "KV memory"): pool | per-slot, the pool's tokens (None: a default cut to the memory
    # limit), its element type, and the share of the memory limit it may take.
    kv_cache_layout: str = "pool"
    kv_cache_tokens: int | None = None
    kv_cache_type: str = "f16"
    kv_memory_fraction: float = 0.5
    prefill_chunk: int = 2048  # prompt tokens per step while other sequences decode (LLM_PREFILL_CHUNK_TOKENS)
    weight_repack: str = "auto"  # llama.cpp's extra CPU buffer types: auto | on | off (LLM_WEIGHT_REPACK)
    gpu_layers: int | None = None  # layers offloaded to the GPU, -1 all; None: all when the build can offload, else 0
    isq_type: str | None = None  # a LLAMACPP_ISQ_TYPES name: quantize the GGUF to it once, then serve that
    isq_cache_dir: Path | None = None  # where quantized GGUFs are kept, keyed by source hash and type


@dataclass(frozen=True, slots=True)
class VllmConfig:
    dtype: str
    max_model_len: int | None
    gpu_memory_utilization: float
    tensor_parallel_size: int
    pipeline_parallel_size: int
    distributed_executor_backend: str | None  # None: vLLM chooses (mp on one node)
    max_num_seqs: int
    max_num_batched_tokens: int | None  # None: vLLM's own default for its OpenAI server on this hardware
    enable_prefix_caching: bool
    enforce_eager: bool
    quantization: str | None  # vLLM's in-situ quantization method, if any


EngineConfig = LlamaCppConfig | VllmConfig
