"""GPU offload on llama.cpp: unset, every layer goes to the GPU when the build can offload and none when it
cannot; LLM_GPU_LAYERS=0 keeps a CUDA build on the CPU. The engine reports what it did."""

from __future__ import annotations

import llama_cpp
import pytest

from llm_inference.engines.llamacpp.engine import LlamaCppEngine, offloaded_layers
from llm_inference.model_spec import embedded_model_path
from llm_inference.models.engine_config import llamacpp_config
from tests.conftest import make_settings


def test_unset_gpu_layers_follow_what_the_build_can_do() -> None:
    expected = -1 if llama_cpp.llama_supports_gpu_offload() else 0
    assert offloaded_layers(None) == expected
    assert offloaded_layers(0) == 0 and offloaded_layers(12) == 12


@pytest.mark.model
async def test_the_engine_reports_its_gpu_layers_and_still_answers() -> None:
    config = llamacpp_config(make_settings(LLM_GPU_LAYERS="0", LLM_MAX_CONCURRENT_REQUESTS="1"))
    assert config.gpu_layers == 0
    engine = await LlamaCppEngine.load(embedded_model_path(), config=config)
    try:
        assert engine.info().extra["gpu_layers"] == "0"
        assert (await engine.tokenize("The capital of France is"))[:1]
    finally:
        await engine.aclose()
