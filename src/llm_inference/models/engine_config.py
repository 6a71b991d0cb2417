"""The one place where the service's Settings become an engine's own configuration."""

from __future__ import annotations

from llm_inference.engines.config import (
    DEFAULT_ISQ_TYPES,
    VLLM_ISQ_METHODS,
    EngineConfig,
    LlamaCppConfig,
    VllmConfig,
    isq_type_problem,
)
from llm_inference.model_spec import gpu_memory_shares
from llm_inference.settings import Settings


def isq_type(backend: str, settings: Settings) -> str | None:
    """The type `backend` quantizes to while loading (None: ISQ off). The CLI refuses an unsupported type before
    the server starts; this refuses it again for a server started some other way (the model fails to load)."""
    if not settings.enable_isq:
        return None
    chosen = settings.isq_type or DEFAULT_ISQ_TYPES[backend]
    problem = isq_type_problem(backend, chosen)
    if problem:
        raise ValueError(problem)
    return chosen


def llamacpp_config(settings: Settings) -> LlamaCppConfig:
    return LlamaCppConfig(
        slots=settings.max_concurrent_requests,
        context_length=settings.context_length,
        threads=settings.threads,
        kv_cache_layout=settings.kv_cache_layout,
        kv_cache_tokens=settings.kv_cache_tokens,
        kv_cache_type=settings.kv_cache_type,
        kv_memory_fraction=settings.kv_cache_memory_fraction,
        gpu_layers=settings.gpu_layers,
        isq_type=isq_type("llamacpp", settings),
        isq_cache_dir=settings.effective_isq_cache_dir,
        prefill_chunk=settings.prefill_chunk_tokens,
        weight_repack=settings.weight_repack,
    )


def gpu_memory_share(settings: Settings, model: str) -> float:
    """The fraction of the GPU that `model`'s vLLM engine may take (vLLM's gpu_memory_utilization): its
    LLM_GPU_MEMORY_SHARES entry, else an equal part of what the resident vLLM models may use together."""
    return gpu_memory_shares(
        settings.allowed_models,
        settings.model_path,
        settings.effective_max_loaded_models,
        settings.gpu_memory_utilization,
        settings.gpu_memory_shares,
    )[model]


def vllm_config(settings: Settings, model: str | None = None) -> VllmConfig:
    quantize_to = isq_type("vllm", settings)
    return VllmConfig(
        dtype=settings.dtype,
        max_model_len=settings.max_model_len or settings.context_length,
        # Several vLLM models share the card: each engine gets its own part (LLM_GPU_MEMORY_SHARES).
        gpu_memory_utilization=gpu_memory_share(settings, model or settings.effective_default_model),
        tensor_parallel_size=settings.tensor_parallel_size,
        pipeline_parallel_size=settings.pipeline_parallel_size,
        distributed_executor_backend=None
        if settings.distributed_executor_backend == "auto"
        else settings.distributed_executor_backend,
        # One knob for "requests decoded at once" unless the operator splits them on purpose.
        max_num_seqs=settings.max_num_seqs or settings.max_concurrent_requests,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        enable_prefix_caching=settings.enable_prefix_caching,
        enforce_eager=settings.enforce_eager,
        quantization=VLLM_ISQ_METHODS[quantize_to] if quantize_to else None,
    )


def engine_config(backend: str, settings: Settings, model: str) -> EngineConfig:
    return llamacpp_config(settings) if backend == "llamacpp" else vllm_config(settings, model)
