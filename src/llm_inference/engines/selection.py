"""Which backend serves a model (LLM_BACKEND=auto|llamacpp|vllm), and how to load an engine for it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llm_inference.engines.base import Engine
from llm_inference.models.spec import ModelSpec
from llm_inference.settings import Settings


class BackendUnavailable(RuntimeError):
    pass


def vllm_usable() -> tuple[bool, str]:
    """vLLM serves only when it is installed and a CUDA device is visible (or its CPU build is installed)."""
    if importlib.util.find_spec("vllm") is None:
        return False, "vllm is not installed (pip install 'llm-inference[gpu]')"
    import torch

    if torch.cuda.is_available():
        return True, f"vllm is installed and CUDA device {torch.cuda.get_device_name(0)!r} is visible"
    return False, "vllm is installed but no CUDA device is visible"


def choose_backend(settings: Settings, spec: ModelSpec) -> tuple[str, str]:
    """Return (backend, reason). Raises BackendUnavailable when the requested backend cannot run."""
    if settings.backend == "llamacpp":
        return "llamacpp", "LLM_BACKEND=llamacpp"
    if settings.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise BackendUnavailable(
                "LLM_BACKEND=vllm but vllm is not installed (pip install 'llm-inference[gpu]')"
            )
        return "vllm", "LLM_BACKEND=vllm"
    if spec.source == "embedded" or spec.is_gguf:
        return "llamacpp", "LLM_BACKEND=auto and the model is a GGUF file"
    usable, why = vllm_usable()
    if usable:
        return "vllm", f"LLM_BACKEND=auto: {why}"
    raise BackendUnavailable(
        f"model {spec.id!r} is not a GGUF file, so only vLLM can serve it, but {why}; "
        "name a GGUF file (org/repo:file.gguf) to serve it on llama.cpp"
    )


async def load_engine(
    backend: str, spec: ModelSpec, model_path: Path, tokenizer_path: Path | None, settings: Settings
) -> Engine:
    if backend == "llamacpp":
        from llm_inference.engines.llamacpp.engine import LlamaCppEngine

        return await LlamaCppEngine.load(model_path, settings=settings, tokenizer_path=tokenizer_path)
    from llm_inference.engines.vllm import VllmEngine  # optional extra: import only when chosen

    return await VllmEngine.load(model_path, settings=settings, tokenizer_path=tokenizer_path)
