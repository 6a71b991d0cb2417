"""The llama.cpp KV cache is one pool of cells that all sequences share, sized by settings within the memory limit:
a real Granian process serving the embedded model (and a copy claiming a 128k trained context)."""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from llm_inference.model_spec import embedded_model_path
from tests.gguf_edit import set_integer
from tests.polling import wait_until
from tests.server import ServerProcess, run_cli

MIB, GIB = 1 << 20, 1 << 30
SMOLLM2_CELL_BYTES = 30 * 3 * (64 + 64)  # layers x KV heads x (K + V head size), times bytes per element


def serve(tmp_path: Path, **env: str) -> ServerProcess:
    """A server with `env` over the defaults (tests/server.py's LLM_CONTEXT_LENGTH=1024 left out)."""
    server = ServerProcess(env=env, log_path=tmp_path / "server.log")
    if "LLM_CONTEXT_LENGTH" not in env:
        server.env.pop("LLM_CONTEXT_LENGTH")
    return server


def loaded_line(server: ServerProcess) -> dict[str, object]:
    """The engine's start-up log line: its KV pool's size, type and the memory limit it was checked against."""
    for line in server.logs().splitlines():
        if '"llama.cpp model loaded"' in line:
            return dict(json.loads(line))
    raise AssertionError(f"no 'llama.cpp model loaded' line in the log:\n{server.logs()}")


def worker_rss(server: ServerProcess) -> float:
    """The worker's resident memory as it reports it (process_resident_memory_bytes)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return float(re.search(r"^process_resident_memory_bytes (\S+)$", text, flags=re.M).group(1))  # type: ignore[union-attr]


def tree_rss(server: ServerProcess) -> int:
    assert server.process is not None
    main = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])


def context_length(server: ServerProcess) -> int:
    [model] = httpx.get(server.url + "/api/llms", timeout=10).json()["models"]
    return int(model["context_length"])


def generate(server: ServerProcess, prompt: str, max_tokens: int, timeout: float = 300) -> httpx.Response:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    return httpx.post(server.url + "/api/generate", json=body, timeout=timeout)


@pytest.mark.model
def test_the_embedded_model_at_ready_with_default_settings_holds_a_small_pool(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        server.wait_for("/health/ready", 200, timeout=300)
        line = loaded_line(server)
        # 8192 cells for all ten concurrent requests, not ten times the trained context: 180 MiB in f16.
        assert (line["kv_cache_tokens"], line["kv_cache_type"]) == (8192, "f16")
        assert line["kv_cache_bytes"] == 8192 * SMOLLM2_CELL_BYTES * 2
        assert context_length(server) == 8192
        # Issue 24's target is 400 MiB (it was 2.0 GB with a stream per slot): 383 MiB here. This venv also
        # holds test tools that Litestar loads plugins for whenever they are installed (pydantic, attrs,
        # polyfactory, faker: 16 MiB more in create_app than the image, whose service.lock has none of them),
        # and a fresh clone's just-written libraries get more of their pages mapped (CI measured 407 MiB before
        # redis-py and the tracing SDK were imported only when used, 9 MiB less since): the bound allows for both.
        assert worker_rss(server) <= 416 * MIB


@pytest.mark.model
def test_a_model_trained_on_a_128k_context_starts_with_defaults_inside_4_gib(tmp_path: Path) -> None:
    long_model = tmp_path / "smollm2-128k.gguf"
    shutil.copy(embedded_model_path(), long_model)
    set_integer(long_model, "llama.context_length", 131072)
    with serve(tmp_path, LLM_ALLOWED_MODELS=str(long_model)) as server:
        server.wait_for("/health/ready", 200, timeout=300)
        assert loaded_line(server)["kv_cache_tokens"] == 8192
        assert context_length(server) == 8192  # a sequence gets the pool, not 131,072 positions it has no cells for
        answer = generate(server, "The capital of France is", 4)
        assert answer.status_code == 200, answer.text
        assert tree_rss(server) < 4 * GIB


@pytest.mark.model
def test_requests_beyond_the_pool_wait_for_cells_and_one_larger_than_it_is_refused(tmp_path: Path) -> None:
    with serve(tmp_path, LLM_KV_CACHE_TOKENS="512", LLM_MAX_CONCURRENT_REQUESTS="4") as server:
        server.wait_for("/health/ready", 200, timeout=300)
        assert loaded_line(server)["kv_cache_tokens"] == 512
        assert context_length(server) == 512  # one sequence may have the whole pool
        too_long = generate(server, " ".join(f"word{i}" for i in range(600)), 8)
        assert too_long.status_code == 400, too_long.text
        error = too_long.json()["error"]
        assert error["type"] == "context_length_exceeded" and "512" in error["message"], error

        # Each needs its prompt + 200 cells: two fit in 512 at once, the others wait for them, and none is cut short.
        prompts = [f"Count from {n}: {n}, {n + 1}," for n in (1, 20, 300, 4000)]
        waited: list[float] = []

        def waiting() -> bool:
            text = httpx.get(server.url + "/metrics", timeout=10).text
            found = re.findall(r"^llm_num_requests_waiting\{[^}]*\} (\S+)$", text, flags=re.M)
            waited.extend(float(v) for v in found)
            return any(float(v) >= 1 for v in found)

        with ThreadPoolExecutor(len(prompts)) as pool:
            answers = [pool.submit(generate, server, prompt, 200) for prompt in prompts]
            wait_until(waiting, timeout=120, what="a request to wait for KV cells", interval=0.05)
            results = [answer.result() for answer in answers]
        for result in results:
            assert result.status_code == 200, result.text
            body = result.json()
            assert body["usage"]["completion_tokens"] == 200 and body["finish_reason"] == "length", body
        assert "llama_decode returned" not in server.logs()


@pytest.mark.model
def test_the_kv_cache_type_is_a_setting(tmp_path: Path) -> None:
    with serve(tmp_path, LLM_KV_CACHE_TYPE="q8_0", LLM_KV_CACHE_TOKENS="1024") as server:
        server.wait_for("/health/ready", 200, timeout=300)
        line = loaded_line(server)
        assert line["kv_cache_type"] == "q8_0"
        assert line["kv_cache_bytes"] == 1024 * SMOLLM2_CELL_BYTES * 34 // 32  # 34 bytes per block of 32
        answer = generate(server, "The capital of France is", 8)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 8, answer.text


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LLM_KV_CACHE_TYPE": "q3"}, "LLM_KV_CACHE_TYPE='q3' is invalid: expected one of bf16 | f16 | f32"),
        ({"LLM_KV_CACHE_LAYOUT": "paged"}, "LLM_KV_CACHE_LAYOUT='paged' is invalid: expected one of per-slot | pool"),
        ({"LLM_KV_CACHE_TOKENS": "100"}, "LLM_KV_CACHE_TOKENS='100' is invalid: expected an integer >= 256"),
        ({"LLM_KV_CACHE_MEMORY_FRACTION": "0"}, "LLM_KV_CACHE_MEMORY_FRACTION='0' is invalid"),
        (
            {"LLM_KV_CACHE_TOKENS": "1024", "LLM_CONTEXT_LENGTH": "4096"},
            "LLM_CONTEXT_LENGTH='4096' is invalid: expected an integer <= LLM_KV_CACHE_TOKENS (1024)",
        ),
    ],
)
def test_bad_values_stop_start_up_naming_the_variable(env: dict[str, str], named: str) -> None:
    result = run_cli("check-config", env)
    assert result.returncode == 2 and named in result.stderr, result.stderr


@pytest.mark.model
def test_a_pool_larger_than_the_memory_limit_is_refused_naming_the_variables(tmp_path: Path) -> None:
    # A billion cells of 23 KB: more than any machine's memory, so refused wherever this runs.
    with serve(tmp_path, LLM_KV_CACHE_TOKENS="1000000000") as server:
        wait_until(
            lambda: "model failed to load" in server.logs(),
            timeout=120,
            what="the model load to be refused",
            details=server.logs,
        )
        assert server.wait_for("/health/ready", 503).status_code == 503
        refusal = next(line for line in server.logs().splitlines() if "model failed to load" in line)
        for name in ("LLM_KV_CACHE_TOKENS=1000000000", "LLM_KV_CACHE_MEMORY_FRACTION=0.5", "LLM_KV_CACHE_TYPE=f16"):
            assert name in refusal, refusal
