"""What a llama.cpp model needs to chat: its chat template, its BOS, and the tokens that end a generation, from
the GGUF or from the tokenizer repo a spec names (`repo:file.gguf@tokenizer-repo`)."""

from __future__ import annotations

import ctypes
import dataclasses
import logging
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel

from llm_inference.engines.chat_template import TOOL_MARKER_TOKENS, ChatTemplate, read_tokenizer_dir

log = logging.getLogger(__name__)


def _token_text(model: LlamaModel, token: int) -> str:
    buffer = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(model.vocab, token, buffer, len(buffer), 0, True)
    return buffer.raw[: max(n, 0)].decode(errors="replace")


@dataclasses.dataclass(frozen=True, slots=True)
class ChatTokens:
    """How prompts are rendered and tokenized, and what ends a generation: from the GGUF, or from the tokenizer
    repo a spec names (`repo:file.gguf@tokenizer-repo`), which wins where it says something."""

    template: ChatTemplate
    add_bos: bool | None  # None: as the GGUF says (llama.cpp's add_special)
    bos: int  # the token add_bos puts first (-1: none)
    stop_tokens: frozenset[int]  # besides the vocabulary's own end-of-generation tokens

    def marker_tokens(self, model: LlamaModel) -> frozenset[int]:
        """The ids of the tool-call markers that are single tokens of this vocabulary."""
        ids = (model.tokenize(text.encode(), add_bos=False, special=True) for text in TOOL_MARKER_TOKENS)
        return frozenset(found[0] for found in ids if len(found) == 1)

    @classmethod
    def of(cls, model: LlamaModel, tokenizer_path: Path | None) -> ChatTokens:
        gguf_template = model.metadata().get("tokenizer.chat_template")
        bos, eos = _token_text(model, model.token_bos()), _token_text(model, model.token_eos())
        if tokenizer_path is None:
            return cls(ChatTemplate(gguf_template, bos, eos), None, model.token_bos(), frozenset())
        files = read_tokenizer_dir(tokenizer_path)

        def token_id(text: str | None, role: str) -> int | None:
            ids = model.tokenize(text.encode(), add_bos=False, special=True) if text else []
            if text and len(ids) != 1:  # a tokenizer that does not match the GGUF's vocabulary
                log.warning(
                    f"the tokenizer's {role} token is not one token of the GGUF's vocabulary; the GGUF's is used",
                    extra={"tokenizer": str(tokenizer_path), "token": text},
                )
            return ids[0] if len(ids) == 1 else None

        stop_tokens = {i for i in files.eos_token_ids if 0 <= i < model.n_vocab()}
        eos_id = token_id(files.eos_token, "EOS")
        if eos_id is not None:
            stop_tokens.add(eos_id)
        bos_id = token_id(files.bos_token, "BOS")
        template = ChatTemplate(files.chat_template or gguf_template, files.bos_token or bos, files.eos_token or eos)
        log.info(
            "chat template and special tokens from the tokenizer repo",
            extra={
                "tokenizer": str(tokenizer_path),
                "chat_template": "tokenizer" if files.chat_template else "gguf",
                "bos_token": files.bos_token,
                "eos_token": files.eos_token,
                "add_bos_token": files.add_bos_token,
                "stop_token_ids": sorted(stop_tokens),
            },
        )
        bos_id = model.token_bos() if bos_id is None else bos_id
        return cls(template, files.add_bos_token, bos_id, frozenset(stop_tokens))
