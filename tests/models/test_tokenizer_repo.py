"""`repo:file.gguf@tokenizer-repo` on llama.cpp: the tokenizer repo's chat template, BOS and EOS win over the
GGUF's own, downloaded from a (fake) hub by the real server, beside the same GGUF served without it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_inference.engines.chat_template import read_tokenizer_dir
from llm_inference.model_spec import EMBEDDED_MODEL
from tests.fake_hub import FakeHub
from tests.polling import wait_until
from tests.server import ServerProcess

GGUF_REPO = "test-org/smollm2-gguf"
TOKENIZER_REPO = "test-org/marked-tokenizer"
MARKER = "### marked template ###"
# SmolLM2's ChatML behind a visible marker; BOS added to every prompt (the GGUF adds none); and " Paris" as the
# EOS, a token the model says in its answer, which only the tokenizer repo makes an end of generation.
TOKENIZER_CONFIG = {
    "bos_token": "<|im_start|>",
    "eos_token": {"content": " Paris", "special": True},
    "add_bos_token": True,
    "chat_template": MARKER
    + "\n{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
}
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
BOS = 1  # <|im_start|> in SmolLM2's vocabulary


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    files = {
        "tokenizer_config.json": json.dumps(TOKENIZER_CONFIG).encode(),
        "model.safetensors": b"weights a tokenizer download must skip",
    }
    tmp = tmp_path_factory.mktemp("tokenizer-repo")
    with FakeHub(GGUF_REPO, small_repos={TOKENIZER_REPO: files}) as hub:
        hub.release.set()
        spec = f"{hub.spec}@{TOKENIZER_REPO}"
        env = {
            "LLM_ALLOWED_MODELS": f"{EMBEDDED_MODEL},{spec}",
            "LLM_PRELOAD_MODELS": f"{EMBEDDED_MODEL},{spec}",  # both, so the tests compare loaded models
            "LLM_MAX_CONCURRENT_REQUESTS": "2",
            **hub.environment(tmp / "hf"),
        }
        with ServerProcess(env, log_path=tmp / "server.log") as process:
            process.wait_for("/health/ready", 200)
            wait_until(
                lambda: {m["id"]: m["state"] for m in httpx.get(process.url + "/api/llms").json()["models"]},
                until=lambda states: set(states.values()) == {"loaded"},
                timeout=120,
                what="both preloaded models loaded",
                interval=0.2,
                details=lambda: f"server log:\n{process.logs()}",
            )
            assert not any("model.safetensors" in r for r in hub.requests), hub.requests
            yield process, spec


def post(server: ServerProcess, path: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(server.url + path, json=body, timeout=60)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def rendered(server: ServerProcess, model: str) -> tuple[list[int], str]:
    tokens = post(server, "/api/tokenize", model=model, messages=QUESTION)["tokens"]
    return tokens, post(server, "/api/detokenize", model=model, tokens=tokens)["text"]


@pytest.mark.model
def test_the_chat_template_and_bos_come_from_the_tokenizer_repo(server: tuple[ServerProcess, str]) -> None:
    process, spec = server
    tokens, text = rendered(process, spec)
    assert tokens[0] == BOS and text.startswith(f"<|im_start|>{MARKER}\n<|im_start|>system\n"), text
    assert text.endswith("What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    # The same file without the tokenizer repo: its own template, and no BOS added.
    _, own = rendered(process, EMBEDDED_MODEL)
    assert own.startswith("<|im_start|>system\n") and MARKER not in own
    assert post(process, "/api/tokenize", model=spec, text="Hi")["tokens"][0] == BOS
    # A prompt that starts with BOS already gets no second one.
    assert post(process, "/api/tokenize", model=spec, text="<|im_start|>Hi")["tokens"][:2] == [BOS, 26843]
    assert post(process, "/api/tokenize", model=EMBEDDED_MODEL, text="Hi")["tokens"][0] != BOS


@pytest.mark.model
def test_the_tokenizer_repos_eos_ends_the_generation(server: tuple[ServerProcess, str]) -> None:
    process, spec = server
    ask = {"messages": QUESTION, "max_tokens": 12, "temperature": 0}
    own = post(process, "/api/chat", model=EMBEDDED_MODEL, **ask)
    assert own["message"]["content"].startswith("The capital of France is Paris")
    overridden = post(process, "/api/chat", model=spec, **ask)
    assert (overridden["message"]["content"], overridden["finish_reason"]) == ("The capital of France is", "stop")
    # The OpenAI surface stops there too.
    openai = post(process, "/v1/chat/completions", model=spec, messages=QUESTION, max_tokens=12, temperature=0)
    assert openai["choices"][0]["message"]["content"] == "The capital of France is"
    assert openai["choices"][0]["finish_reason"] == "stop"


def test_reading_a_tokenizer_folder(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": "ignored"})
    )
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")  # wins, as in transformers
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    files = read_tokenizer_dir(tmp_path)
    assert (files.chat_template, files.bos_token, files.eos_token) == ("{{ messages }}", "<s>", "</s>")
    assert (files.add_bos_token, files.eos_token_ids) == (None, (2, 7))
