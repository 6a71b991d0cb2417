"""Resolve a model spec to files on disk, downloading hub models with huggingface-hub into HF_HOME."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_inference.model_spec import ModelSpec, embedded_model_path
from llm_inference.settings import Settings

log = logging.getLogger(__name__)

# A tokenizer repo only needs its tokenizer and config files, never its weights.
_TOKENIZER_FILES = ["*.json", "*.model", "*.txt", "*.jinja"]


def resolve_local(spec: ModelSpec) -> Path:
    if spec.source == "embedded":
        return embedded_model_path()
    assert spec.path is not None
    if not spec.path.exists():
        raise FileNotFoundError(f"model {spec.id!r}: local path {spec.path} does not exist")
    return spec.path


Progress = Callable[[int, int | None], None]  # (bytes done, bytes in all or None while unknown)


def _reporting_bar(progress: Progress) -> type[Any]:
    """A tqdm class for huggingface-hub's download loop that reports bytes to `progress` and prints nothing."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]  # a dependency of huggingface-hub

    class ReportingBar(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})
            self.done = int(kwargs.get("initial") or 0)
            progress(self.done, self.total)

        def update(self, n: float | None = 1) -> bool | None:
            self.done += int(n or 0)
            progress(self.done, self.total)
            return None

    return ReportingBar


def fetch(spec: ModelSpec, progress: Progress | None = None) -> tuple[Path, Path | None]:
    """Return (model file or directory, tokenizer directory or None). Blocking: call off the event loop.

    huggingface-hub itself honours HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE.
    """
    if spec.source != "hub":
        return resolve_local(spec), None
    from huggingface_hub import hf_hub_download, snapshot_download

    assert spec.repo is not None
    started = time.monotonic()
    log.info("downloading model", extra={"model": spec.id, "repo": spec.repo, "file": spec.filename})
    if spec.filename:
        bar = _reporting_bar(progress) if progress else None
        path = Path(hf_hub_download(spec.repo, spec.filename, tqdm_class=bar))
    else:  # a folder of files: its bar counts files, not bytes, so no byte progress is reported
        path = Path(snapshot_download(spec.repo))
    tokenizer = None
    if spec.tokenizer_repo:
        tokenizer = Path(snapshot_download(spec.tokenizer_repo, allow_patterns=_TOKENIZER_FILES))
    log.info(
        "model ready on disk",
        extra={"model": spec.id, "path": str(path), "seconds": round(time.monotonic() - started, 1)},
    )
    return path, tokenizer


def prepare_isq(spec: ModelSpec, path: Path, settings: Settings) -> Path:
    """The file the server will serve for `spec` with LLM_ENABLE_ISQ: on llama.cpp, `path` quantized into the ISQ
    cache now (the init container's job, so the server starts from a cache hit); else `path` itself, since vLLM
    quantizes while it loads. Blocking."""
    from llm_inference.engines.selection import choose_backend
    from llm_inference.models.engine_config import llamacpp_config

    if not settings.enable_isq or choose_backend(settings.backend, spec)[0] != "llamacpp":
        return path
    from llm_inference.engines.llamacpp.engine import threads_for
    from llm_inference.engines.llamacpp.quantize import quantized_model

    config = llamacpp_config(settings)
    assert config.isq_type is not None and config.isq_cache_dir is not None
    return quantized_model(path, config.isq_type, config.isq_cache_dir, threads_for(config))
