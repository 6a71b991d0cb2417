"""The one place where the service's Settings become an engine's own configuration."""

from __future__ import annotations

from llm_inference.engines.config import VLLM_ISQ_METHODS, EngineConfig, LlamaCppConfig, VllmConfig
from llm_inference.settings import Settings


def llamacpp_config(settings: Settings) -> LlamaCppConfig:
    return LlamaCppConfig(
        slots=settings.max_concurrent_requests,
        context_length=settings.context_length,
        threads=settings.threads,
        prefill_chunk=settings.prefill_chunk_tokens,
        weight_repack=settings.weight_repack,
    )


def vllm_config(settings: Settings) -> VllmConfig:
    return VllmConfig(
        dtype=settings.dtype,
        max_model_len=settings.max_model_len or settings.context_length,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        tensor_parallel_size=settings.tensor_parallel_size,
        # One knob for "requests decoded at once" unless the operator splits them on purpose.
        max_num_seqs=settings.max_num_seqs or settings.max_concurrent_requests,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        enable_prefix_caching=settings.enable_prefix_caching,
        enforce_eager=settings.enforce_eager,
        quantization=VLLM_ISQ_METHODS[settings.isq_type] if settings.enable_isq else None,
    )


def engine_config(backend: str, settings: Settings) -> EngineConfig:
    return llamacpp_config(settings) if backend == "llamacpp" else vllm_config(settings)
