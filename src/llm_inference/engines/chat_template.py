"""Render chat messages with a model's own Jinja chat template (from GGUF metadata or tokenizer_config.json)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from llm_inference.engines.base import ChatMessage, ToolCall

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
        # Jinja's own tojson returns Markup, HTML-escaping < > & ' inside and whatever text is joined to it (a
        # Mistral tool list read &#34;parameters&#34;); templates are written for transformers', plain JSON.
        env.filters["tojson"] = _tojson
        self._template = env.from_string(source or FALLBACK_TEMPLATE)
        self._bos, self._eos = bos_token, eos_token

        self.tool_format = tool_format(source)
        # Mistral's templates refuse any call id but 9 letters or digits; OpenAI's ids are longer.
        self._call_id = _mistral_call_id if self.tool_format == "mistral" else str

    def render(self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        context: dict[str, Any] = {}
        if tools:  # only then: templates test `tools is defined` or `tools is not none`
            context["tools"] = [dict(tool) for tool in tools]
        return self._template.render(
            messages=[self._message(m) for m in messages],
            add_generation_prompt=True,
            bos_token=self._bos,
            eos_token=self._eos,
            **context,
        )

    def _message(self, message: ChatMessage) -> dict[str, Any]:
        rendered: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            # Templates write the arguments with `| tojson`, so they get the object, not its JSON text (as in
            # transformers' and vLLM's chat rendering).
            rendered["tool_calls"] = [
                {
                    "id": self._call_id(call.id),
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments(call)},
                }
                for call in message.tool_calls
            ]
        if message.tool_call_id is not None:
            rendered["tool_call_id"] = self._call_id(message.tool_call_id)
        if message.name is not None:
            rendered["name"] = message.name
        return rendered


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _mistral_call_id(call_id: str) -> str:
    """A 9-character id of letters and digits standing for `call_id`: the same one for the call and for the tool
    message that answers it. Ids already of that form are kept."""
    if re.fullmatch(r"[A-Za-z0-9]{9}", call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()
    return digest[:9]


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


# The tool-call formats service/tools can read, known by the marker each template writes its tool calls with
# (Llama 3.2's template has no <|python_tag|>, only the JSON shape it asks for).
_FORMAT_MARKERS = (
    ("<tool_call>", "hermes"),
    ("[TOOL_CALLS]", "mistral"),
    ("<|python_tag|>", "llama3_json"),
    ('{"name": function name, "parameters"', "llama3_json"),
)
# The tokens those formats write their calls with: control tokens in some vocabularies, which engines leave out
# of the text unless told to keep them (SamplingParams.tool_markers).
TOOL_MARKER_TOKENS = ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>")
_USES_TOOLS = re.compile(r"\btools\b")


def tool_format(source: str | None) -> str | None:
    """The tool-call format a template writes tools in; None when it takes no tools or writes them in a format
    not known here (the tools are then described in a system message instead)."""
    if not source or not _USES_TOOLS.search(source):
        return None
    return next((name for marker, name in _FORMAT_MARKERS if marker in source), None)


@dataclass(frozen=True, slots=True)
class TokenizerFiles:
    """What a Hugging Face tokenizer folder (`repo:file.gguf@tokenizer-repo`) says about chat: its template, its
    BOS and EOS tokens, whether a prompt starts with BOS, and the ids that end a generation."""

    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    add_bos_token: bool | None  # None: the folder does not say
    eos_token_ids: tuple[int, ...]  # generation_config.json's eos_token_id: one id or several


def _token_text(value: object) -> str | None:
    # tokenizer_config.json writes a special token as text or as an AddedToken object {"content": ...}.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def read_tokenizer_dir(directory: Path) -> TokenizerFiles:
    """Read tokenizer_config.json, chat_template.jinja (which wins over the config's template, as in
    transformers) and generation_config.json."""
    config = _json_object(directory / "tokenizer_config.json")
    jinja_file = directory / "chat_template.jinja"
    source = jinja_file.read_text(encoding="utf-8") if jinja_file.is_file() else config.get("chat_template")
    if isinstance(source, list):  # several named templates: take the default one
        source = next((t["template"] for t in source if t.get("name") == "default"), None)
    add_bos = config.get("add_bos_token")
    eos_ids = _json_object(directory / "generation_config.json").get("eos_token_id")
    eos_ids = [eos_ids] if isinstance(eos_ids, int) else eos_ids if isinstance(eos_ids, list) else []
    return TokenizerFiles(
        chat_template=source if isinstance(source, str) and source else None,
        bos_token=_token_text(config.get("bos_token")),
        eos_token=_token_text(config.get("eos_token")),
        add_bos_token=add_bos if isinstance(add_bos, bool) else None,
        eos_token_ids=tuple(i for i in eos_ids if isinstance(i, int) and not isinstance(i, bool)),
    )
