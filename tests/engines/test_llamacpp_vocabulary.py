"""OpenAI's vocabulary on the llama.cpp engine: log probabilities (of the output and of the prompt), logit bias,
penalties and min_p in the sampler chain, and the n choices of one prompt sharing its prefill."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import llama_cpp
import numpy as np
import pytest

from llm_inference.engines.arrivals import ARRIVALS
from llm_inference.engines.base import ChatMessage, Chunk, FinishReason, GenerationRequest, SamplingParams
from llm_inference.engines.constraints import json_schema_constraint
from llm_inference.engines.llamacpp.engine import LlamaCppEngine
from llm_inference.errors import EngineFailure, InvalidParameter
from llm_inference.model_spec import embedded_model_path
from llm_inference.models.engine_config import llamacpp_config
from llm_inference.service.choices import run_all
from tests.conftest import make_settings
from tests.polling import wait_until_async

pytestmark = pytest.mark.model

CONTEXT = 1024  # tests/conftest.py TEST_ENV: every engine here and the reference hold as much per sequence
# Long enough to be worth sharing (scheduler.MIN_SHARED_TOKENS) and to be read over several steps while a
# neighbour decodes (the engine's prompt budget is 32 tokens then).
SHARED_PROMPT = (
    "You are a patient teacher. Explain things simply, in short sentences, and give one example each time. "
    "Question: why does ice float on water?"
)


@pytest.fixture(scope="module")
async def engine():
    config = llamacpp_config(make_settings(LLM_MAX_CONCURRENT_REQUESTS="6", LLM_PREFILL_CHUNK_TOKENS="32"))
    loaded = await LlamaCppEngine.load(embedded_model_path(), config=config)
    yield loaded
    await loaded.aclose()


@pytest.fixture(scope="module")
async def lone_engine():
    """One slot: every request here runs alone, its prompt read in one step, as a lone client sees it."""
    loaded = await LlamaCppEngine.load(
        embedded_model_path(), config=llamacpp_config(make_settings(LLM_MAX_CONCURRENT_REQUESTS="1"))
    )
    yield loaded
    await loaded.aclose()


@pytest.fixture(scope="module")
def reference():
    """llama-cpp-python's own high-level model, keeping every row's logits: an independent evaluation. Flash
    attention as the engine's context has it (llama.cpp's default, auto, turns it on here): without it the
    numbers differ by up to 0.1."""
    model = llama_cpp.Llama(
        model_path=str(embedded_model_path()),
        n_ctx=CONTEXT,
        logits_all=True,
        flash_attn=True,
        n_threads=2,
        verbose=False,
    )
    yield model
    model.close()


def reference_log_softmax(model: llama_cpp.Llama, prompt: list[int], generated: list[int] = ()) -> np.ndarray:
    """Log-softmax of every position's logits: the prompt in one batch, then one token per decode (as the engine
    reads a prompt, then decodes); row i scores token i + 1."""
    model.reset()
    model.eval(prompt)
    for token in generated:
        model.eval([token])
    logits = np.asarray(model.scores[: model.n_tokens], dtype=np.float64)
    peak = logits.max(axis=1, keepdims=True)
    return logits - (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))


def request(prompt: str | list[int], max_tokens: int = 8, **sampling) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=sampling.pop("temperature", 0.0), top_p=1.0, **sampling)
    tokens = tuple(prompt) if isinstance(prompt, list) else None
    return GenerationRequest(uuid.uuid4().hex, "" if tokens else prompt, params, prompt_token_ids=tokens)


async def run(engine: LlamaCppEngine, req: GenerationRequest) -> list[Chunk]:
    return [chunk async for chunk in engine.generate(req)]


def text(chunks: list[Chunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


def entries(chunks: list[Chunk]):
    return [entry for chunk in chunks for entry in chunk.logprobs]


# -- log probabilities ----------------------------------------------------------------------------------------


async def test_each_generated_token_has_its_log_probability_and_alternatives(engine, reference) -> None:
    prompt = await engine.tokenize("The capital of France is")
    chunks = await run(engine, request(prompt, max_tokens=8, logprobs=5, ignore_eos=True))
    tokens = entries(chunks)
    assert len(tokens) == chunks[-1].completion_tokens == 8
    assert all(len(chunk.logprobs) == 1 for chunk in chunks), "one entry per step, in the step's chunk"
    assert b"".join(entry.text for entry in tokens).decode() == text(chunks)
    for entry in tokens:
        assert entry.logprob is not None and entry.logprob <= 0
        assert len(entry.top) == 5
        assert [logprob for _, _, logprob in entry.top] == sorted((lp for _, _, lp in entry.top), reverse=True)
        # Greedy: the token drawn is the most likely one, and its entry repeats the top one's values.
        assert entry.top[0][:2] == (entry.token, entry.text)
        assert entry.top[0][2] == pytest.approx(entry.logprob, abs=1e-9)
    expected = reference_log_softmax(reference, prompt, [entry.token for entry in tokens[:-1]])
    for i, entry in enumerate(tokens):
        row = expected[len(prompt) - 1 + i]
        assert entry.logprob == pytest.approx(row[entry.token], abs=1e-3), i
        for token, _, logprob in entry.top:
            assert logprob == pytest.approx(row[token], abs=1e-3), (i, token)


async def test_log_probabilities_are_of_the_raw_logits_whatever_draws_the_token(engine) -> None:
    prompt = await engine.tokenize("The capital of France is")
    greedy = entries(await run(engine, request(prompt, max_tokens=1, logprobs=3)))[0]
    # A bias that forces another token changes the draw, not the log probabilities of the model's distribution.
    forced = greedy.top[2][0]
    biased = entries(await run(engine, request(prompt, max_tokens=1, logprobs=3, logit_bias=((forced, 100.0),))))[0]
    assert biased.token == forced
    assert biased.logprob == pytest.approx(greedy.top[2][2], abs=1e-4)
    assert [t for t, _, _ in biased.top] == [t for t, _, _ in greedy.top]


async def test_requests_without_log_probabilities_get_none(engine) -> None:
    chunks = await run(engine, request("The capital of France is", max_tokens=4))
    assert all(chunk.logprobs == () and chunk.prompt_logprobs is None for chunk in chunks)


async def test_the_end_token_has_no_log_probability(engine) -> None:
    prompt = await engine.render_chat([ChatMessage("user", "Say hi.")])
    chunks = await run(engine, request(prompt, max_tokens=64, logprobs=1))
    assert chunks[-1].finish_reason is FinishReason.STOP
    assert len(entries(chunks)) == chunks[-1].completion_tokens


async def test_prompt_log_probabilities_come_on_the_first_chunk(engine, reference) -> None:
    prompt = await engine.tokenize("The capital of France is Paris, and the capital of Italy is")
    reused_before = engine.prefix_tokens_reused
    await run(engine, request(prompt, max_tokens=2))  # its cells stay as a prefix cache, which scoring must not use
    chunks = await run(engine, request(prompt, max_tokens=3, prompt_logprobs=2, logprobs=0))
    assert engine.prefix_tokens_reused == reused_before
    scores = chunks[0].prompt_logprobs
    assert scores is not None and all(chunk.prompt_logprobs is None for chunk in chunks[1:])
    assert [entry.token for entry in scores] == prompt
    assert scores[0].logprob is None and scores[0].top == ()
    expected = reference_log_softmax(reference, prompt)
    for position, entry in enumerate(scores[1:], start=1):
        assert entry.logprob == pytest.approx(expected[position - 1][entry.token], abs=1e-3), position
        assert len(entry.top) == 2
        assert entry.top[0][2] == pytest.approx(expected[position - 1].max(), abs=1e-3)
    # The generated tokens' own log probabilities follow on as usual.
    assert len(entries(chunks)) == chunks[-1].completion_tokens


async def test_a_prompt_longer_than_a_step_is_scored_over_several_steps(engine, monkeypatch) -> None:
    from llm_inference.engines.llamacpp import scheduler

    monkeypatch.setattr(scheduler, "SCORED_ROWS_PER_STEP", 16)
    prompt = await engine.tokenize("one two three four five six seven eight nine ten " * 5)
    assert len(prompt) > 3 * 16
    steps_before = engine.decode_steps
    chunks = await run(engine, request(prompt, max_tokens=0, prompt_logprobs=0))
    assert engine.decode_steps - steps_before >= len(prompt) // 16
    alone = await run(engine, request(prompt[:20], max_tokens=0, prompt_logprobs=0))
    scores = chunks[0].prompt_logprobs
    assert scores is not None and len(scores) == len(prompt)
    assert all(entry.logprob is not None for entry in scores[1:])
    # Numbers at a step's border agree with the same prompt scored in one step.
    for entry, same in zip(scores[:20], alone[0].prompt_logprobs or (), strict=True):
        assert entry.token == same.token
        assert (entry.logprob is None) == (same.logprob is None)
        if entry.logprob is not None:
            assert entry.logprob == pytest.approx(same.logprob, abs=1e-3)


async def test_max_tokens_zero_scores_the_prompt_and_generates_nothing(engine) -> None:
    prompt = await engine.tokenize("The capital of France is")
    chunks = await run(engine, request(prompt, max_tokens=0, prompt_logprobs=1))
    assert len(chunks) == 1
    (only,) = chunks
    assert (only.text, only.completion_tokens, only.finish_reason) == ("", 0, FinishReason.LENGTH)
    assert only.prompt_tokens == len(prompt) and len(only.prompt_logprobs or ()) == len(prompt)
    with pytest.raises(InvalidParameter):
        await run(engine, request(prompt, max_tokens=0))


async def test_a_true_continuation_scores_higher_than_a_false_one(engine) -> None:
    async def score(sentence: str, continuation_tokens: int) -> float:
        tokens = await engine.tokenize(sentence)
        scores = (await run(engine, request(tokens, max_tokens=0, prompt_logprobs=0)))[0].prompt_logprobs
        assert scores is not None
        return sum(entry.logprob or 0.0 for entry in scores[-continuation_tokens:])

    stem = len(await engine.tokenize("The capital of France is"))
    paris = await engine.tokenize("The capital of France is Paris")
    berlin = await engine.tokenize("The capital of France is Berlin")
    assert await score("The capital of France is Paris", len(paris) - stem) > await score(
        "The capital of France is Berlin", len(berlin) - stem
    )


# -- logit bias, penalties, min_p -------------------------------------------------------------------------------


async def test_logit_bias_bans_and_forces_tokens_under_greedy_decoding(engine) -> None:
    prompt = await engine.tokenize("The capital of France is")
    plain = entries(await run(engine, request(prompt, max_tokens=3, logprobs=0)))
    banned = entries(await run(engine, request(prompt, max_tokens=3, logprobs=0, logit_bias=((plain[0].token, -100),))))
    assert banned[0].token != plain[0].token
    assert plain[0].token not in [entry.token for entry in banned]
    comma = (await engine.tokenize(",", add_special=False))[0]
    forced = entries(await run(engine, request(prompt, max_tokens=3, logprobs=0, logit_bias=((comma, 100),))))
    assert [entry.token for entry in forced] == [comma] * 3


async def test_penalties_change_a_repetitive_greedy_output(engine) -> None:
    prompt = await engine.tokenize("Repeat after me: hello hello hello")
    hello = (await engine.tokenize(" hello", add_special=False))[0]

    async def tokens(**penalty: float) -> list[int]:
        chunks = await run(engine, request(prompt, 12, logprobs=0, ignore_eos=True, **penalty))
        return [entry.token for entry in entries(chunks)]

    assert await tokens() == [hello] * 12
    # Presence and frequency count generated tokens only: nothing is generated before the first token, so it
    # stays; then the output stops repeating what it wrote.
    for penalized in (await tokens(frequency_penalty=0.5), await tokens(presence_penalty=2.0)):
        assert penalized[0] == hello
        assert penalized.count(hello) < 12, penalized
    # The repetition penalty counts the prompt's tokens too (as vLLM's): it changes the very first token.
    assert (await tokens(repetition_penalty=1.2))[0] != hello


async def test_min_p_keeps_only_the_tokens_near_the_most_likely(engine) -> None:
    prompt = await engine.tokenize("My favourite animal is")
    greedy = text(await run(engine, request(prompt, max_tokens=12)))
    # min_p 1 keeps only the most likely token: any seed, any temperature draws what greedy decoding does.
    for seed in (1, 2):
        assert text(await run(engine, request(prompt, 12, temperature=1.5, seed=seed, min_p=1.0))) == greedy
    free = {text(await run(engine, request(prompt, 12, temperature=1.5, seed=seed))) for seed in (1, 2, 3)}
    assert free != {greedy}, "without min_p the draw does vary"


async def test_a_json_schema_holds_with_penalties_and_bias(engine) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "legs": {"type": "integer"}},
        "required": ["name", "legs"],
        "additionalProperties": False,
    }
    constraint = json_schema_constraint(schema, "response_format")
    prompt = await engine.tokenize("Describe a cat as JSON with its name and number of legs: ")
    quote = (await engine.tokenize('"', add_special=False))[0]
    for params in (
        {"frequency_penalty": 1.0, "repetition_penalty": 1.3},
        {"presence_penalty": 1.5, "temperature": 0.8, "seed": 3, "logit_bias": ((quote, -5.0),)},
    ):
        chunks = await run(engine, request(prompt, max_tokens=64, constraint=constraint, logprobs=1, **params))
        assert chunks[-1].finish_reason is FinishReason.STOP, text(chunks)
        document = json.loads(text(chunks))
        assert set(document) == {"name", "legs"} and isinstance(document["legs"], int)
        assert len(entries(chunks)) == chunks[-1].completion_tokens


# -- n choices share the prompt's prefill ---------------------------------------------------------------------


def counters(engine: LlamaCppEngine) -> tuple[int, int, int]:
    return engine.prompt_tokens_prefilled, engine.prefix_tokens_shared, engine.prefix_tokens_reused


async def together(*runs: Any) -> list[Any]:
    """Runs of one prompt submitted as the service submits a request's `n` choices (service/choices.run_all): on
    their way to the engine until each is queued (engines/arrivals.py), so the idle engine starts on all of them
    in one step, however late a loaded machine lets the last one reach it."""
    with ARRIVALS.arriving():
        return await run_all(runs)


@pytest.mark.parametrize("whole_streams", [False, True], ids=["state-copy", "stream-copy"])
async def test_n_identical_prompts_submitted_together_read_the_prompt_once(engine, lone_engine, whole_streams) -> None:
    engine._loop._whole_stream_copies = whole_streams  # the copy models with a sliding window use
    try:
        # Distinct per run: a prompt's cells stay in the prefix cache, and this is about running sequences.
        prompt = await engine.tokenize(f"{SHARED_PROMPT} ({'streams' if whole_streams else 'state'})")
        n = 4
        before = counters(engine)
        choices = await together(*(run(engine, request(prompt, max_tokens=16)) for _ in range(n)))
        prefilled, shared, reused = (after - b for after, b in zip(counters(engine), before, strict=True))
    finally:
        engine._loop._whole_stream_copies = False
    assert prefilled + shared + reused == n * len(prompt)
    # One of them read the prompt; the others copied its cells (one that came a step late, as the first was
    # already decoding, copies all but the last token and reads that one).
    assert prefilled <= len(prompt) + (n - 1), (prefilled, shared, reused)
    assert shared >= (n - 1) * (len(prompt) - 1), (prefilled, shared, reused)
    alone = text(await run(lone_engine, request(prompt, max_tokens=16)))
    assert [text(chunks) for chunks in choices] == [alone] * n


async def test_choices_share_the_prefill_of_one_that_scores_the_prompt(engine) -> None:
    # echo with logprobs and n > 1: one choice asking for the prompt's log probabilities computes every row of
    # it, and the others copy its cells (a choice that asks for them too would compute its own).
    prompt = await engine.tokenize(f"{SHARED_PROMPT} (scored)")
    before = counters(engine)
    scored, *others = await together(
        run(engine, request(prompt, max_tokens=6, prompt_logprobs=1)),
        *(run(engine, request(prompt, max_tokens=6)) for _ in range(2)),
    )
    prefilled, shared, reused = (after - b for after, b in zip(counters(engine), before, strict=True))
    assert reused == 0 and prefilled + shared == 3 * len(prompt)
    assert prefilled <= len(prompt) + 2 and shared >= 2 * (len(prompt) - 1), (prefilled, shared)
    assert len(scored[0].prompt_logprobs or ()) == len(prompt)
    assert all(chunks[0].prompt_logprobs is None for chunks in others)
    assert [text(chunks) for chunks in others] == [text(scored)] * 2


async def test_seeded_choices_sharing_a_prompt_each_sample_as_if_alone(engine, lone_engine) -> None:
    prompt = await engine.tokenize(f"{SHARED_PROMPT} (seeded)")
    seeds = (11, 12, 13)
    shared_before = engine.prefix_tokens_shared
    choices = await together(
        *(run(engine, request(prompt, max_tokens=12, temperature=1.0, seed=seed)) for seed in seeds)
    )
    assert engine.prefix_tokens_shared - shared_before >= 2 * (len(prompt) - 1)
    for seed, chunks in zip(seeds, choices, strict=True):
        alone = await run(lone_engine, request(prompt, max_tokens=12, temperature=1.0, seed=seed))
        assert text(chunks) == text(alone), seed
    assert len({text(chunks) for chunks in choices}) > 1


async def test_a_prompt_sharing_a_running_sequences_prefix_copies_it(engine, lone_engine) -> None:
    system = await engine.tokenize(f"Running prefix. {SHARED_PROMPT} Answer:")  # no cache holds any of it
    first = system + (await engine.tokenize(" Because", add_special=False))
    second = system + (await engine.tokenize(" Ice is", add_special=False))
    decoding = engine.generate(request(first, max_tokens=200, ignore_eos=True))
    await anext(decoding)  # decoding now: its cells hold the whole common prefix
    before = counters(engine)
    out = await run(engine, request(second, max_tokens=8))
    await decoding.aclose()
    prefilled, shared, _ = (after - b for after, b in zip(counters(engine), before, strict=True))
    assert shared == len(system) and prefilled == len(second) - len(system)
    assert text(out) == text(await run(lone_engine, request(second, max_tokens=8)))


async def test_a_follower_whose_source_is_cancelled_reads_the_prompt_itself(engine, lone_engine) -> None:
    # A neighbour decodes, so a prompt is read 32 tokens per step and the first choice is still reading its
    # prompt when it is cancelled.
    neighbour = engine.generate(request("Count: 1, 2, 3,", max_tokens=300, ignore_eos=True))
    await anext(neighbour)
    prompt = await engine.tokenize(f"{SHARED_PROMPT} (cancelled) " + "Think about density. " * 30)
    assert len(prompt) > 4 * 32
    source_request = request(prompt, max_tokens=8)
    source = asyncio.create_task(run(engine, source_request))
    await wait_until_async(
        lambda: (s := engine._sequences.get(source_request.request_id)) is not None and s.slot >= 0,
        timeout=30,
        what="the first choice to be seated",
        interval=0.001,
    )
    follower = asyncio.create_task(run(engine, request(prompt, max_tokens=8)))
    await wait_until_async(lambda: engine._loop._followers, timeout=30, what="a follower", interval=0.001)
    shared_before = engine.prefix_tokens_shared
    source.cancel()
    chunks = await follower
    await neighbour.aclose()
    assert chunks[-1].finish_reason is not None
    assert engine.prefix_tokens_shared == shared_before, "nothing was copied: the follower read its prompt itself"
    assert text(chunks) == text(await run(lone_engine, request(prompt, max_tokens=8)))
    assert not engine._loop._followers
    assert engine.stats().running == 0


async def test_a_failed_copy_fails_only_the_follower(engine, monkeypatch) -> None:
    prompt = await engine.tokenize(f"{SHARED_PROMPT} (failing copy)")
    monkeypatch.setattr(llama_cpp, "llama_state_seq_set_data", lambda *args: 0)  # between per-slot streams

    def refuse(*args: object) -> None:  # in the pool
        raise RuntimeError("no cells shared")

    monkeypatch.setattr(llama_cpp, "llama_memory_seq_cp", refuse)
    first, second = await asyncio.gather(
        run(engine, request(prompt, max_tokens=4)), run(engine, request(prompt, max_tokens=4)), return_exceptions=True
    )
    assert isinstance(first, list) and first[-1].finish_reason is not None
    assert isinstance(second, EngineFailure)
    monkeypatch.undo()
    assert text(await run(engine, request(prompt, max_tokens=4))) == text(first)


async def test_cancelling_a_waiting_follower_frees_its_slot_and_leaves_its_source_alone(engine) -> None:
    neighbour = engine.generate(request("Count: 1, 2, 3,", max_tokens=300, ignore_eos=True))
    await anext(neighbour)
    prompt = await engine.tokenize(f"{SHARED_PROMPT} (follower cancelled) " + "Think about density. " * 30)
    source_request, follower_request = request(prompt, max_tokens=6), request(prompt, max_tokens=6)
    source = asyncio.create_task(run(engine, source_request))
    await wait_until_async(
        lambda: (s := engine._sequences.get(source_request.request_id)) is not None and s.slot >= 0,
        timeout=30,
        what="the first choice to be seated",
        interval=0.001,
    )
    follower = asyncio.create_task(run(engine, follower_request))
    await wait_until_async(lambda: engine._loop._followers, timeout=30, what="a follower", interval=0.001)
    sequence = engine._loop._followers[0]
    follower.cancel()
    await wait_until_async(
        lambda: sequence.released_at_step is not None, timeout=30, what="the follower's release", interval=0.001
    )
    assert sequence.released_at_step - sequence.cancelled_at_step <= 1
    assert not engine._loop._followers
    chunks = await source
    await neighbour.aclose()
    assert chunks[-1].finish_reason is FinishReason.LENGTH and chunks[-1].completion_tokens == 6
