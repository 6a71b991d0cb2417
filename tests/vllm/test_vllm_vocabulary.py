"""OpenAI's sampling vocabulary on the vLLM engine itself (vLLM's CPU build, the converted SmolLM2): log probabilities
of generated and prompt tokens, scoring a prompt without generating, logit_bias, penalties and min_p.

One engine in this process serves the module; the requests are a few tokens each."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from llm_inference.engines.base import (
    ChatMessage,
    Chunk,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
)
from llm_inference.engines.token_bytes import TokenBytes
from llm_inference.engines.vllm import VllmEngine
from llm_inference.models.engine_config import vllm_config
from tests.conftest import make_settings
from tests.vllm.conftest import VLLM_CPU_ENV

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"
PARIS, LONDON = 7042, 4528  # " Paris", greedy's first token after PROMPT, and " London", its third choice
_ids = itertools.count()


@pytest.fixture(scope="module")
async def engine(model_dir: Path) -> AsyncIterator[VllmEngine]:
    # float32, not the checkpoint's bfloat16: the prompt's scores are compared with transformers' to 1e-2.
    service_env = {name: value for name, value in VLLM_CPU_ENV.items() if name.startswith("LLM_")}
    settings = make_settings(LLM_ALLOWED_MODELS=str(model_dir), LLM_DTYPE="float32", **service_env)
    with pytest.MonkeyPatch.context() as env:  # read by vLLM's engine-core process as it starts
        env.setenv("VLLM_CPU_KVCACHE_SPACE", VLLM_CPU_ENV["VLLM_CPU_KVCACHE_SPACE"])
        loaded = await VllmEngine.load(model_dir, config=vllm_config(settings))
    try:
        yield loaded
    finally:
        await loaded.aclose()


async def generate(engine: VllmEngine, prompt: str = PROMPT, **sampling: Any) -> list[Chunk]:
    params = SamplingParams(**{"max_tokens": 6, "temperature": 0.0, "top_p": 1.0, **sampling})
    return [chunk async for chunk in engine.generate(GenerationRequest(f"vocab-{next(_ids)}", prompt, params))]


def tokens(chunks: list[Chunk]) -> list[TokenLogprob]:
    return [token for chunk in chunks for token in chunk.logprobs]


def assert_same(found: Sequence[TokenLogprob] | None, expected: Sequence[TokenLogprob] | None) -> None:
    """The same tokens and alternatives, their values equal but for rounding (a batch of another size may round
    otherwise)."""
    assert found is not None and expected is not None

    def values(logprobs: Sequence[TokenLogprob]) -> list[float | None]:
        return [value for t in logprobs for value in (t.logprob, *(logprob for *_, logprob in t.top))]

    assert [(t.token, t.text, [top[:2] for top in t.top]) for t in found] == [
        (t.token, t.text, [top[:2] for top in t.top]) for t in expected
    ]
    assert values(found) == pytest.approx(values(expected), abs=1e-3)


def text(chunks: list[Chunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


async def test_greedy_tokens_come_with_their_logprob_and_top_choices(engine: VllmEngine) -> None:
    chunks = await generate(engine, logprobs=3, max_tokens=6)
    generated = tokens(chunks)
    assert chunks[-1].finish_reason is FinishReason.LENGTH
    assert len(generated) == chunks[-1].completion_tokens == 6 and generated[0].token == PARIS
    for chunk in chunks:  # each chunk's own tokens (an ASCII answer without stop strings: text is never held back)
        assert b"".join(token.text for token in chunk.logprobs).decode() == chunk.text
    for token in generated:
        assert len(token.top) == 3
        assert token.top[0][:2] == (token.token, token.text)  # greedy takes the most likely
        assert token.logprob == token.top[0][2] <= 0
        assert [logprob for *_, logprob in token.top] == sorted((logprob for *_, logprob in token.top), reverse=True)
    assert all(chunk.prompt_logprobs is None for chunk in chunks)

    # k = 0: the chosen token alone.
    assert_same(tokens(await generate(engine, logprobs=0, max_tokens=1)), [dataclasses.replace(generated[0], top=())])
    # Raw values, before temperature and penalties: sampling hot changes none of the first position's.
    [hot] = tokens(await generate(engine, logprobs=3, max_tokens=1, temperature=1.5, seed=3, frequency_penalty=2.0))
    assert [top[:2] for top in hot.top] == [top[:2] for top in generated[0].top]
    assert [top[2] for top in hot.top] == pytest.approx([top[2] for top in generated[0].top], abs=1e-3)

    # A chat's answer ends at its end-of-turn token: counted by vLLM, but no part of the text, so not reported.
    chat = await engine.render_chat([ChatMessage("user", "Hi")])
    answer = await generate(engine, chat, logprobs=1, max_tokens=64)
    assert answer[-1].finish_reason is FinishReason.STOP
    assert len(tokens(answer)) == answer[-1].completion_tokens - 1
    assert b"".join(token.text for token in tokens(answer)).decode() == text(answer)


def reference_logprobs(model_dir: Path, prompt_ids: list[int]) -> torch.Tensor:
    """log_softmax of the logits of transformers' own forward pass over the same weights, in float32."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt_ids])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


async def test_prompt_logprobs_score_the_prompt_as_the_model_does(engine: VllmEngine, model_dir: Path) -> None:
    prompt = "The capital of France is Paris. The capital of Italy is Rome."
    [scored] = await generate(engine, prompt, prompt_logprobs=2, max_tokens=0)
    # max_tokens 0: vLLM generates one token (it must), which the engine drops.
    assert (scored.text, scored.completion_tokens, scored.finish_reason, scored.logprobs) == (
        "",
        0,
        FinishReason.LENGTH,
        (),
    )
    ids = await engine.tokenize(prompt)
    assert scored.prompt_logprobs is not None and [t.token for t in scored.prompt_logprobs] == ids
    first, *rest = scored.prompt_logprobs
    assert (first.logprob, first.top, first.text) == (None, (), b"The")
    assert all(len(t.top) == 2 and t.logprob is not None for t in rest)

    reference = reference_logprobs(model_dir, ids)
    for position, token in enumerate(rest):  # both in float32 (the module's engine is)
        expected = reference[position]
        assert token.logprob == pytest.approx(expected[token.token].item(), abs=1e-2)
        for other, _, logprob in token.top:
            assert logprob == pytest.approx(expected[other].item(), abs=1e-2)

    # With generation: the same scores, on the first chunk only, and the answer as it is without them.
    chunks = await generate(engine, prompt, prompt_logprobs=2, max_tokens=3)
    assert_same(chunks[0].prompt_logprobs, scored.prompt_logprobs)
    assert all(chunk.prompt_logprobs is None for chunk in chunks[1:])
    assert text(chunks) == text(await generate(engine, prompt, max_tokens=3))


async def test_a_true_continuation_outscores_a_false_one(engine: VllmEngine) -> None:
    async def score(prompt: str) -> float:
        [scored] = await generate(engine, prompt, prompt_logprobs=0, max_tokens=0)
        assert scored.prompt_logprobs is not None
        return sum(t.logprob for t in scored.prompt_logprobs[1:] if t.logprob is not None)

    assert await score("The capital of France is Paris.") > await score("The capital of France is London.")
    assert await score("One, two, three, four, five.") > await score("One, two, three, seven, five.")


async def test_logit_bias_bans_and_forces_tokens_under_greedy(engine: VllmEngine) -> None:
    banned = tokens(await generate(engine, logprobs=1, max_tokens=2, logit_bias=((PARIS, -100.0),)))
    assert banned[0].token != PARIS
    # The reported values are the model's, before the bias: Paris is still its first choice.
    assert banned[0].top[0][0] == PARIS
    forced = await generate(engine, max_tokens=3, logit_bias=((LONDON, 100.0),))
    assert text(forced) == " London London London"


async def test_penalties_and_min_p_change_what_they_should(engine: VllmEngine) -> None:
    echo = "Repeat after me: yes yes yes yes yes"
    assert text(await generate(engine, echo, max_tokens=8)) == " yes" * 8  # greedy repeats itself
    for penalty in ({"repetition_penalty": 1.5}, {"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        assert text(await generate(engine, echo, max_tokens=8, **penalty)) != " yes" * 8, penalty
    # min_p 1 keeps only the most likely token: hot sampling becomes greedy.
    hot = {"temperature": 1.5, "seed": 11}
    assert text(await generate(engine, max_tokens=8, min_p=1.0, **hot)) == text(await generate(engine, max_tokens=8))


async def test_identical_prompts_side_by_side_get_identical_answers(engine: VllmEngine) -> None:
    """The service answers n > 1 with n requests of one prompt; vLLM's prefix cache shares their prefill, which
    must not cut their prompt log probabilities short."""
    runs = await asyncio.gather(*(generate(engine, logprobs=2, prompt_logprobs=1, max_tokens=4) for _ in range(3)))
    for run in runs:
        assert text(run) == text(runs[0])
        assert_same(tokens(run), tokens(runs[0]))
        assert_same(run[0].prompt_logprobs, runs[0][0].prompt_logprobs)
    assert len(runs[0][0].prompt_logprobs or ()) == len(await engine.tokenize(PROMPT))


def test_token_bytes_are_raw_even_for_pieces_of_a_character(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    token_bytes = TokenBytes(tokenizer)
    sample = "héllo — 日本 🙂\n"
    ids = tokenizer.encode(sample, add_special_tokens=False)
    pieces = [token_bytes(i) for i in ids]
    assert b"".join(pieces) == sample.encode()
    # 日 is three tokens here, one of its UTF-8 bytes each (the first after a space); decoded alone, each is U+FFFD.
    start = pieces.index(b" \xe6")
    assert pieces[start : start + 3] == [b" \xe6", b"\x97", b"\xa5"]
    assert tokenizer.decode(ids[start + 1 : start + 2]) == "\ufffd"
    assert token_bytes(tokenizer.convert_tokens_to_ids("<|im_end|>")) == b"<|im_end|>"

    # A SentencePiece vocabulary with byte fallback (Llama 2, Mistral): ▁ is a space, <0xNN> a byte.
    vocab = {"<unk>": 0, "<0xE6>": 1, "<0x97>": 2, "<0xA5>": 3, "▁hello": 4, "▁": 5}
    spm = Tokenizer(models.BPE(vocab, [], unk_token="<unk>", byte_fallback=True))
    spm.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    spm_bytes = TokenBytes(PreTrainedTokenizerFast(tokenizer_object=spm, unk_token="<unk>"))
    assert [spm_bytes(i) for i in range(1, 6)] == [b"\xe6", b"\x97", b"\xa5", b" hello", b" "]
