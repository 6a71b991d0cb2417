"""Model specs: the embedded model, hub repos with files and tokenizer repos, and local paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_inference.model_spec import EMBEDDED_MODEL, InvalidModelSpec, embedded_model_path, parse_spec


def test_embedded_model_is_found_in_the_installed_wheel() -> None:
    spec = parse_spec(EMBEDDED_MODEL)
    assert spec.source == "embedded" and spec.id == EMBEDDED_MODEL and spec.is_gguf
    path = embedded_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90_000_000


@pytest.mark.parametrize(
    ("text", "repo", "filename", "tokenizer"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", None, None),
        ("org/repo-GGUF:model.Q4_K_M.gguf", "org/repo-GGUF", "model.Q4_K_M.gguf", None),
        ("org/repo-GGUF:sub/dir/m.gguf@tok-org/tok.repo", "org/repo-GGUF", "sub/dir/m.gguf", "tok-org/tok.repo"),
    ],
)
def test_hub_specs(text: str, repo: str, filename: str | None, tokenizer: str | None) -> None:
    spec = parse_spec(text)
    assert (spec.source, spec.id, spec.repo, spec.filename, spec.tokenizer_repo) == (
        "hub",
        text,
        repo,
        filename,
        tokenizer,
    )
    assert spec.is_gguf == bool(filename)


def test_local_paths(tmp_path: Path) -> None:
    absolute = parse_spec(str(tmp_path / "m.gguf"))
    assert absolute.source == "local" and absolute.path == tmp_path / "m.gguf" and absolute.is_gguf
    (tmp_path / "hf-model").mkdir()
    relative = parse_spec("hf-model", model_path=str(tmp_path))
    assert relative.source == "local" and relative.path == tmp_path / "hf-model" and not relative.is_gguf


@pytest.mark.parametrize("text", ["no spaces allowed", "org/repo:file.gguf@not a repo", "a:b:c"])
def test_invalid_specs_are_refused(text: str) -> None:
    with pytest.raises(InvalidModelSpec, match="is not a model spec"):
        parse_spec(text)
