"""Each engine's own small configuration: what it needs to load a model, and nothing of the service's settings.
models/engine_config.py builds them from Settings, in one place."""

from __future__ import annotations

from dataclasses import dataclass

# LLM_ISQ_TYPE -> vLLM's `quantization` method that quantizes unquantized weights while loading them.
VLLM_ISQ_METHODS = {"fp8": "fp8"}


@dataclass(frozen=True, slots=True)
class LlamaCppConfig:
    slots: int  # sequences decoded at once (LLM_MAX_CONCURRENT_REQUESTS)
    context_length: int | None  # per sequence; None: the model's training context
    threads: int | None  # None: every core
    prefill_chunk: int = 512  # prompt tokens per step while other sequences decode (LLM_PREFILL_CHUNK_TOKENS)
    weight_repack: str = "auto"  # llama.cpp's extra CPU buffer types: auto | on | off (LLM_WEIGHT_REPACK)


@dataclass(frozen=True, slots=True)
class VllmConfig:
    dtype: str
    max_model_len: int | None
    gpu_memory_utilization: float
    tensor_parallel_size: int
    max_num_seqs: int
    max_num_batched_tokens: int | None  # None: vLLM's own default for its OpenAI server on this hardware
    enable_prefix_caching: bool
    enforce_eager: bool
    quantization: str | None  # vLLM's in-situ quantization method, if any


EngineConfig = LlamaCppConfig | VllmConfig
