"""`llm-inference fetch-model` (the init container's command) prepares every allowed model, then exits."""

from __future__ import annotations

import subprocess
from pathlib import Path

from llm_inference.engines.llamacpp.quantize import cached_file_name, file_sha256
from llm_inference.model_spec import embedded_model_path
from tests.fake_hub import FakeHub
from tests.server import run_cli


def fetch_model(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("fetch-model", {"LLM_LOG_FORMAT": "json", **env}, timeout=300)


def test_embedded_model_needs_no_download() -> None:
    result = fetch_model({})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"smollm2-135m-instruct\t{embedded_model_path()}"


def test_hub_model_is_downloaded_into_hf_home(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.release.set()
    result = fetch_model({"LLM_ALLOWED_MODELS": fake_hub.spec, **fake_hub.environment(tmp_path)})
    assert result.returncode == 0, result.stderr
    model_id, path = result.stdout.strip().split("\t")
    assert model_id == fake_hub.spec
    assert Path(path).is_relative_to(tmp_path) and Path(path).stat().st_size == fake_hub.file_path.stat().st_size
    assert '"message": "model ready on disk"' in result.stderr.replace('":"', '": "')


def test_unavailable_model_fails_the_init_container(tmp_path: Path) -> None:
    result = fetch_model({"LLM_ALLOWED_MODELS": str(tmp_path / "absent.gguf")})
    assert result.returncode == 1
    assert "model unavailable" in result.stderr and "absent.gguf" in result.stderr


def test_with_isq_on_llamacpp_the_init_container_quantizes_into_the_servers_cache(tmp_path: Path) -> None:
    env = {"LLM_ENABLE_ISQ": "true", "LLM_ISQ_TYPE": "Q8_0", "LLM_ISQ_CACHE_DIR": str(tmp_path)}
    result = fetch_model(env)
    assert result.returncode == 0, result.stderr
    model_id, path = result.stdout.strip().split("\t")
    # The very file the server looks up in the cache at load (tests/models/test_isq_serving.py).
    expected = tmp_path / cached_file_name(file_sha256(embedded_model_path()), "Q8_0")
    assert (model_id, Path(path)) == ("smollm2-135m-instruct", expected) and expected.is_file()
    assert '"message": "quantized model"' in result.stderr.replace('":"', '": "')
