"""Render chat messages with a model's own Jinja chat template (from GGUF metadata or tokenizer_config.json)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from jinja2.sandbox import ImmutableSandboxedEnvironment

from llm_inference.engines.base import ChatMessage

log = logging.getLogger(__name__)

# Used only for a model that ships no template at all: plain role-prefixed turns.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def _raise(message: str) -> None:
    raise ValueError(message)


class ChatTemplate:
    """A compiled chat template. Templates come from model files, so they run in Jinja's sandbox."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        if not source:
            log.warning("model has no chat template; using a plain role-prefixed format")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(source or FALLBACK_TEMPLATE)
        self._bos, self._eos = bos_token, eos_token

    def render(self, messages: Sequence[ChatMessage]) -> str:
        return self._template.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            bos_token=self._bos,
            eos_token=self._eos,
        )


def template_from_tokenizer_dir(directory: Path) -> ChatTemplate | None:
    """The template of a Hugging Face tokenizer folder (tokenizer_config.json or chat_template.jinja)."""
    jinja_file = directory / "chat_template.jinja"
    config_file = directory / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}

    def token(name: str) -> str:
        value = config.get(name) or ""
        return value.get("content", "") if isinstance(value, dict) else value

    source = jinja_file.read_text() if jinja_file.is_file() else config.get("chat_template")
    if isinstance(source, list):  # several named templates: take the default one
        source = next((t["template"] for t in source if t.get("name") == "default"), None)
    if not source:
        return None
    return ChatTemplate(source, token("bos_token"), token("eos_token"))
