"""In-situ quantization on llama.cpp: the embedded model (Q4_1) requantized with llama.cpp's own API, cached by
content hash and type, written atomically, and still answering as the source does."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from llm_inference.engines.base import ChatMessage, GenerationRequest, SamplingParams
from llm_inference.engines.config import LlamaCppConfig
from llm_inference.engines.llamacpp.engine import LlamaCppEngine
from llm_inference.engines.llamacpp.quantize import cached_file_name, file_sha256, gguf_file_type, quantized_model
from llm_inference.model_spec import embedded_model_path

# With this system message the 135M model answers "The capital of France is Paris." at temperature 0.
QUESTION = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "What is the capital of France?"),
]
THREADS = 2


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("isq-cache")


@pytest.fixture(scope="module")
def quantized(cache_dir: Path) -> dict[str, Path]:
    """Q8_0 (larger than the Q4_1 source) and Q3_K_S (smaller), each quantized once for the module. A stale
    half-written file from an earlier crash lies in the cache beforehand: it must be neither served nor hit."""
    source = embedded_model_path()
    stale = cache_dir / f".{cached_file_name(file_sha256(source), 'Q8_0')}.0badc0ffee00.partial"
    stale.write_bytes(b"GGUF" + b"\0" * 1000)
    return {isq_type: quantized_model(source, isq_type, cache_dir, THREADS) for isq_type in ("Q8_0", "Q3_K_S")}


async def greedy_answer(model_path: Path) -> tuple[str, str | None]:
    engine = await LlamaCppEngine.load(model_path, config=LlamaCppConfig(slots=1, context_length=512, threads=THREADS))
    try:
        prompt = await engine.render_chat(QUESTION)
        sampling = SamplingParams(max_tokens=12, temperature=0, top_p=1)
        request = GenerationRequest(request_id=uuid.uuid4().hex, prompt=prompt, sampling=sampling)
        text = "".join([chunk.text async for chunk in engine.generate(request)])
        return text, engine.info().quantization
    finally:
        await engine.aclose()


@pytest.mark.model
def test_the_quantized_files_have_the_asked_types_and_sizes(quantized: dict[str, Path], cache_dir: Path) -> None:
    source = embedded_model_path()
    assert gguf_file_type(source) == "Q4_1"
    for isq_type, path in quantized.items():
        assert path.parent == cache_dir
        assert path.name == cached_file_name(file_sha256(source), isq_type)
        assert gguf_file_type(path) == isq_type
    # 8 bits a weight against Q4_1's 5; Q3_K_S below it (tensors whose rows K-quants cannot split fall back).
    assert quantized["Q8_0"].stat().st_size > 1.3 * source.stat().st_size
    assert quantized["Q3_K_S"].stat().st_size < 0.95 * source.stat().st_size


@pytest.mark.model
async def test_the_quantized_models_still_answer_as_the_source_does(quantized: dict[str, Path]) -> None:
    source_answer, source_type = await greedy_answer(embedded_model_path())
    assert (source_type, source_answer.startswith("The capital of France is Paris")) == ("Q4_1", True)
    # Q8_0 adds precision to the Q4_1 weights it starts from: the same greedy answer.
    assert await greedy_answer(quantized["Q8_0"]) == (source_answer, "Q8_0")
    # Q3_K_S loses some: still the right answer to a factual question, first tokens alike.
    answer, isq_type = await greedy_answer(quantized["Q3_K_S"])
    assert isq_type == "Q3_K_S" and answer.startswith("The capital of France is Paris"), answer


@pytest.mark.model
def test_a_second_load_is_served_from_the_cache(
    quantized: dict[str, Path], cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    modified = quantized["Q8_0"].stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="llm_inference.engines.llamacpp.quantize"):
        again = quantized_model(embedded_model_path(), "Q8_0", cache_dir, THREADS)
    assert again == quantized["Q8_0"] and again.stat().st_mtime_ns == modified
    messages = [record.getMessage() for record in caplog.records]
    assert "quantized model found in the ISQ cache" in messages
    assert "quantizing model" not in messages


def test_asking_for_the_sources_own_type_serves_the_source(cache_dir: Path) -> None:
    assert quantized_model(embedded_model_path(), "Q4_1", cache_dir, THREADS) == embedded_model_path()


@pytest.mark.model
def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    # The final name is taken by a folder, so the rename after quantizing fails: the temporary file must go too.
    blocked = tmp_path / cached_file_name(file_sha256(embedded_model_path()), "Q8_0")
    (blocked / "in-the-way").mkdir(parents=True)
    with pytest.raises(OSError):
        quantized_model(embedded_model_path(), "Q8_0", tmp_path, THREADS)
    assert [p.name for p in tmp_path.iterdir()] == [blocked.name]


def test_a_type_llamacpp_cannot_quantize_to_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"LLM_ISQ_TYPE=fp8 .* llama.cpp supports Q4_0, Q4_1, .*Q6_K"):
        quantized_model(embedded_model_path(), "fp8", tmp_path, THREADS)
    assert list(tmp_path.iterdir()) == []
