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
    gpu_layers: int | None  # layers offloaded to the GPU, -1 all; None: all when the build can offload, else 0


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
