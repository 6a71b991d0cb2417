"""Backend choice where vLLM is not installed (the default CPU install): GGUF goes to llama.cpp, and a
machine that cannot run what LLM_BACKEND asks for stops at start-up. tests/vllm covers the vLLM side."""

from __future__ import annotations

import importlib.util

import pytest

from llm_inference.engines.selection import BackendUnavailable, choose_backend
from llm_inference.model_spec import parse_spec
from tests.conftest import make_settings
from tests.server import run_cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")


def test_auto_serves_gguf_on_llamacpp_and_refuses_a_folder_without_vllm() -> None:
    settings = make_settings()
    assert choose_backend(settings.backend, parse_spec("org/repo:model.Q4_0.gguf"))[0] == "llamacpp"
    with pytest.raises(BackendUnavailable, match="only vLLM can serve it, but vLLM is not installed"):
        choose_backend(settings.backend, parse_spec("org/repo"))


def test_llm_backend_vllm_without_vllm_stops_start_up_with_exit_code_2() -> None:
    result = run_cli("serve", {"LLM_BACKEND": "vllm", "LLM_ALLOWED_MODELS": "org/model"})
    assert result.returncode == 2, result.stderr
    assert "LLM_BACKEND=vllm but vLLM is not installed (pip install 'llm-inference[gpu]'" in result.stderr


def test_gpu_layers_on_a_llamacpp_build_without_cuda_stops_start_up_with_exit_code_2() -> None:
    # This machine's llama-cpp-python is a CPU build (the CUDA image's is not): asking for GPU layers here
    # must stop start-up, not quietly run on the CPU.
    result = run_cli("serve", {"LLM_GPU_LAYERS": "-1"})
    assert result.returncode == 2, result.stderr
    assert "LLM_GPU_LAYERS=-1 asks llama.cpp to put layers on a GPU, but this llama-cpp-python build" in result.stderr
    bad = run_cli("check-config", {"LLM_GPU_LAYERS": "-2"})
    assert bad.returncode == 2 and "LLM_GPU_LAYERS='-2' is invalid" in bad.stderr, bad.stderr
