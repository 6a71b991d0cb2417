"""LLM_ENABLE_ISQ on llama.cpp through the real server: the embedded model is quantized once at load, served,
and found in the cache by the next start; a type the backend cannot quantize to stops start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_inference.model_spec import embedded_model_path
from llm_inference.models.engine_config import vllm_config
from tests.conftest import make_settings
from tests.server import ServerProcess, run_cli

QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def log_records(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]


def serve_once(env: dict[str, str], log_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Start the server, ask it the question, read its model info metric, stop it: (log, chat answer, metrics)."""
    with ServerProcess(env, log_path=log_path) as server:
        server.wait_for("/health/ready", 200)
        ask = {"messages": QUESTION, "max_tokens": 12, "temperature": 0}
        answer = httpx.post(server.url + "/api/chat", json=ask, timeout=60)
        assert answer.status_code == 200, answer.text
        metrics = httpx.get(server.url + "/metrics").text
        assert server.stop() == 0
        return log_records(server), answer.json(), metrics


@pytest.mark.model
def test_the_model_is_quantized_once_served_and_then_found_in_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "isq"
    env = {"LLM_ENABLE_ISQ": "true", "LLM_ISQ_TYPE": "q8_0", "LLM_ISQ_CACHE_DIR": str(cache)}
    records, answer, metrics = serve_once(env, tmp_path / "first.log")
    progress = [r for r in records if r["message"] == "quantizing model: progress"]
    assert len(progress) == 10 and progress[-1]["tensors_done"] == progress[-1]["tensors"] == 272, progress
    [done] = [r for r in records if r["message"] == "quantized model"]
    assert (done["from_type"], done["isq_type"]) == ("Q4_1", "Q8_0")
    assert done["source_bytes"] == embedded_model_path().stat().st_size < done["quantized_bytes"]
    [cached] = list(cache.iterdir())
    assert cached.stat().st_size == done["quantized_bytes"] and done["path"] == str(cached)
    assert 'quantization="Q8_0"' in metrics
    # Q8_0 keeps all of Q4_1's precision: the source's own answer (tests/api/test_chat.py).
    assert answer["message"]["content"].startswith("The capital of France is Paris"), answer

    modified = cached.stat().st_mtime_ns
    records, answer, metrics = serve_once(env, tmp_path / "second.log")
    messages = [r["message"] for r in records]
    assert "quantized model found in the ISQ cache" in messages and "quantizing model" not in messages
    assert list(cache.iterdir()) == [cached] and cached.stat().st_mtime_ns == modified
    assert 'quantization="Q8_0"' in metrics
    assert answer["message"]["content"].startswith("The capital of France is Paris"), answer


def test_a_type_llamacpp_lacks_stops_start_up_naming_the_backend_and_its_types() -> None:
    result = run_cli("serve", {"LLM_ENABLE_ISQ": "true", "LLM_ISQ_TYPE": "fp8"})
    assert result.returncode == 2, result.stderr
    assert (
        "model 'smollm2-135m-instruct' is served by llama.cpp, and LLM_ISQ_TYPE=fp8 is not a type llama.cpp can "
        "quantize to while loading; llama.cpp supports Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S"
    ) in result.stderr


def test_a_type_no_backend_has_is_a_settings_error_listing_every_type() -> None:
    result = run_cli("check-config", {"LLM_ISQ_TYPE": "Q4K"})
    assert result.returncode == 2
    assert "LLM_ISQ_TYPE='Q4K' is invalid: expected one of fp8 (vLLM) or Q4_0 | Q4_1 |" in result.stderr
    assert "Q4_K means Q4_K_M" in result.stderr


def test_a_llamacpp_type_for_vllm_fails_that_models_load_naming_vllms_types() -> None:
    # The CLI refuses it before the server starts (tests/vllm); a server started another way fails the model.
    with pytest.raises(ValueError, match="LLM_ISQ_TYPE=Q4_K_M is not a type vLLM can quantize to while loading; "):
        vllm_config(make_settings(LLM_ENABLE_ISQ="true", LLM_ISQ_TYPE="Q4_K_M"))
    assert vllm_config(make_settings(LLM_ENABLE_ISQ="true", LLM_ISQ_TYPE="FP8")).quantization == "fp8"
