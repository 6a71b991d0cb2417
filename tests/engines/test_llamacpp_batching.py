"""The llama.cpp decode loop batches concurrent requests; with a KV stream per slot (LLM_KV_CACHE_LAYOUT=per-slot)
batching changes no request's output (with the default pool a near-tie may flip: docs/cpu.md "KV memory")."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import uuid

import llama_cpp
import pytest

from llm_inference.engines.arrivals import ARRIVALS, expect_arrivals
from llm_inference.engines.base import ChatMessage, Chunk, FinishReason, GenerationRequest, SamplingParams
from llm_inference.engines.llamacpp import scheduler
from llm_inference.engines.llamacpp.engine import LlamaCppEngine, usable_cpus
from llm_inference.engines.llamacpp.scheduler import first_half_of_prompts
from llm_inference.model_spec import embedded_model_path
from llm_inference.models.engine_config import llamacpp_config
from tests.conftest import make_settings
from tests.polling import wait_until_async

CHUNK = 32  # LLM_PREFILL_CHUNK_TOKENS of this module's engine
PROMPTS = [
    "The capital of France is",
    "Write a haiku about the sea:",
    "def fibonacci(n):",
    "The three primary colours are",
    "Once upon a time, in a small village,",
    "To make a cup of tea, first",
    "The largest planet in the solar system is",
    "Here is a list of fruits: apple, banana,",
]


@pytest.fixture(scope="module")
async def engine():
    # A prompt budget smaller than the default, so that a short test prompt is read over several steps.
    config = llamacpp_config(make_settings(LLM_MAX_CONCURRENT_REQUESTS="8", LLM_PREFILL_CHUNK_TOKENS=str(CHUNK)))
    loaded = await LlamaCppEngine.load(embedded_model_path(), config=config)
    yield loaded
    await loaded.aclose()


@pytest.fixture(scope="module")
async def per_slot_engine():
    """A KV stream per slot: the layout whose outputs do not depend on their batch neighbours."""
    config = llamacpp_config(
        make_settings(
            LLM_MAX_CONCURRENT_REQUESTS="8", LLM_PREFILL_CHUNK_TOKENS=str(CHUNK), LLM_KV_CACHE_LAYOUT="per-slot"
        )
    )
    loaded = await LlamaCppEngine.load(embedded_model_path(), config=config)
    yield loaded
    await loaded.aclose()


def request(prompt: str, max_tokens: int = 32, **sampling) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=sampling.pop("temperature", 0.0), top_p=1.0, **sampling)
    return GenerationRequest(request_id=uuid.uuid4().hex, prompt=prompt, sampling=params)


async def run(engine: LlamaCppEngine, req: GenerationRequest) -> tuple[str, Chunk]:
    chunks = [chunk async for chunk in engine.generate(req)]
    return "".join(c.text for c in chunks), chunks[-1]


@pytest.mark.model
async def test_concurrent_greedy_outputs_equal_each_prompt_alone(per_slot_engine) -> None:
    engine = per_slot_engine
    # Alone: one after another, so each is the only sequence in its batches; distinct prompts defeat the
    # prefix cache differently, which is part of what is being checked.
    alone = [await run(engine, request(p)) for p in PROMPTS]
    steps_before = engine.decode_steps
    together = await asyncio.gather(*(run(engine, request(p)) for p in PROMPTS))
    steps = engine.decode_steps - steps_before
    for prompt, (text_alone, last_alone), (text_together, last_together) in zip(PROMPTS, alone, together, strict=True):
        assert text_together == text_alone, prompt
        assert last_together.completion_tokens == last_alone.completion_tokens
    generated = sum(last.completion_tokens for _, last in together)
    # Batched for real: 8 sequences decoded in far fewer steps than one step per token.
    assert steps < generated / 3, (steps, generated)


@pytest.mark.model
async def test_a_prompt_read_while_others_decode_goes_in_chunks_alone_in_one_batch(engine, monkeypatch) -> None:
    steps: list[int] = []  # tokens per llama_decode
    real_decode = llama_cpp.llama_decode

    def recording(ctx, batch):  # type: ignore[no-untyped-def]
        steps.append(batch.n_tokens)
        return real_decode(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", recording)
    chunk = CHUNK
    first, second = (" ".join(f"{word}{i}" for i in range(120)) for word in ("apple", "river"))
    first_tokens, second_tokens = len(await engine.tokenize(first)), len(await engine.tokenize(second))
    assert min(first_tokens, second_tokens) > 3 * chunk
    # Nobody decoding: nobody waits, so the whole prompt is read in one step.
    await run(engine, request(first, max_tokens=1))
    assert steps[0] == first_tokens
    decoding = engine.generate(request(PROMPTS[0], max_tokens=400, ignore_eos=True))
    await anext(decoding)  # it has its first token: from here every step carries its next one
    steps.clear()
    await run(engine, request(second, max_tokens=2))
    await decoding.aclose()
    # The decoder's token plus at most one chunk of prompt per step, until the prompt is read.
    assert max(steps) <= 1 + chunk, steps
    assert steps.count(1 + chunk) == second_tokens // chunk, steps


@pytest.mark.model
async def test_seeded_sampling_is_unaffected_by_batch_neighbours(per_slot_engine) -> None:
    engine = per_slot_engine
    seeded = request("My favourite animal is", max_tokens=24, temperature=1.2, seed=77)
    alone, _ = await run(engine, seeded)
    noise = [run(engine, request(p, max_tokens=24, temperature=1.0)) for p in PROMPTS[:5]]
    results = await asyncio.gather(run(engine, seeded), *noise)
    assert results[0][0] == alone


@pytest.mark.model
@pytest.mark.parametrize("layout", ["pool", "per-slot"])
async def test_cancelled_sequence_leaves_within_one_step_and_frees_its_cells(engine, per_slot_engine, layout) -> None:
    engine = per_slot_engine if layout == "per-slot" else engine
    neighbour_alone, _ = await run(engine, request(PROMPTS[0], max_tokens=40))
    neighbour = asyncio.create_task(run(engine, request(PROMPTS[0], max_tokens=40)))
    long_request = request("Count to one thousand: 1, 2, 3,", max_tokens=400, ignore_eos=True)
    stream = engine.generate(long_request)
    for _ in range(5):
        await anext(stream)
    sequence = engine._sequences[long_request.request_id]
    await stream.aclose()
    await wait_until_async(  # the decode thread releases it at its next step
        lambda: sequence.released_at_step is not None,
        timeout=30,
        what="the decode thread to release the cancelled sequence",
        interval=0.001,
        details=lambda: f"cancelled at step {sequence.cancelled_at_step}, the loop is at step {engine.decode_steps}",
    )
    # The loop may be inside a step when we cancel; the sequence must be gone when that step ends. (The loop
    # records both step counts itself: on a busy machine the event loop may notice the release later.)
    assert sequence.cancelled_at_step is not None
    assert sequence.released_at_step - sequence.cancelled_at_step <= 1
    slot = sequence.slot
    memory = llama_cpp.llama_get_memory(engine._ctx)
    assert llama_cpp.llama_memory_seq_pos_max(memory, slot) == -1, "the cancelled sequence's KV cells are freed"
    text, _ = await neighbour
    if layout == "per-slot":  # in the pool, the cells it freed may reorder the neighbour's: a near-tie may flip
        assert text == neighbour_alone, "the other sequence is unaffected"
    assert engine.stats().running == 0 and engine.stats().waiting == 0


@pytest.mark.model
async def test_requests_beyond_the_slots_wait_then_run(engine) -> None:
    requests = [request(p, max_tokens=16) for p in PROMPTS + PROMPTS[:4]]  # 12 requests, 8 slots
    tasks = [asyncio.create_task(run(engine, r)) for r in requests]
    peak_waiting = 0
    while not all(t.done() for t in tasks):
        stats = engine.stats()
        assert stats.running <= 8
        peak_waiting = max(peak_waiting, stats.waiting)
        await asyncio.sleep(0.002)
    assert peak_waiting > 0
    assert all(t.result()[1].finish_reason is not None for t in tasks)


@pytest.mark.model
async def test_prefix_cache_reuses_a_finished_prompt(engine) -> None:
    shared = "You are a careful assistant. Answer in one sentence. Question: " * 4
    first, _ = await run(engine, request(shared + "What colour is the sky?"))
    reused_before = engine.prefix_tokens_reused
    second, _ = await run(engine, request(shared + "What colour is the sky?"))
    assert engine.prefix_tokens_reused - reused_before > 40
    assert second == first


@pytest.mark.model
async def test_generation_stops_at_the_context_end(engine) -> None:
    # Settings give each sequence 1024 tokens; a prompt of ~1000 leaves room for a few tokens only.
    prompt = "word " * 1015
    tokens = await engine.tokenize(prompt)
    _, last = await run(engine, request(prompt, max_tokens=100, ignore_eos=True))
    assert last.finish_reason is FinishReason.LENGTH
    assert last.completion_tokens == 1024 - len(tokens)


@pytest.mark.parametrize(
    ("cpu_max", "expected"), [("200000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None)]
)
def test_default_threads_follow_a_cgroup_cpu_limit(tmp_path, cpu_max: str, expected: int | None) -> None:
    limit = tmp_path / "cpu.max"
    limit.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(limit) == min(affinity, expected or affinity)
    assert usable_cpus(tmp_path / "missing") == affinity


@pytest.mark.model
async def test_ignore_eos_never_draws_an_end_token_so_every_step_streams_text(engine) -> None:
    # As llama-server does: a model made to go on past its answer does not draw the end token and then the next
    # turn's role header (steps that stream nothing, then text nobody asked for).
    prompt = await engine.render_chat([ChatMessage("user", "Say hi.")])
    natural, last_natural = await run(engine, request(prompt, max_tokens=64))
    assert last_natural.finish_reason is FinishReason.STOP and last_natural.completion_tokens < 64
    chunks = [chunk async for chunk in engine.generate(request(prompt, max_tokens=64, ignore_eos=True))]
    text = "".join(chunk.text for chunk in chunks)
    assert chunks[-1].finish_reason is FinishReason.LENGTH and chunks[-1].completion_tokens == 64
    assert text.startswith(natural) and len(text) > len(natural)
    assert "user\n" not in text and "assistant\n" not in text, text
    assert all(chunk.text for chunk in chunks), [chunk.text for chunk in chunks]


@pytest.mark.parametrize(
    ("pending", "taken"),
    [
        ([100], 100),  # one prompt: all of it
        ([100] * 16, 900),  # a burst of equal prompts: more than half of them (the median request is in it)
        ([100] * 8, 500),
        ([100] * 3, 200),  # whole prompts, at least half of the tokens
        ([1000, 10, 10], 1010),  # the first prompt holds more than half the tokens, but is not more than half
        ([1000, 10], 1010),
        ([10, 10, 1000], 1020),  # the half lies in the last prompt, which is taken whole
        ([3000], 2048),  # never more than the batch
    ],
)
def test_a_step_with_nobody_decoding_reads_the_first_half_of_the_pending_prompts(pending, taken) -> None:
    assert first_half_of_prompts(pending, 2048) == taken


@pytest.mark.model
async def test_requests_arriving_together_at_an_idle_engine_start_in_one_step(engine, monkeypatch) -> None:
    # Both requests are on their way when the first reaches the idle engine (the server counts a request from its
    # first middleware until its engine queues it, engines/arrivals.py); the second is still being prepared, 20 ms
    # behind. The decode thread, woken by the first, waits for the second (the bound is raised so that a loaded
    # machine cannot split the pair) and reads both prompts in its first step: the short one is less than half
    # of the pending prompt tokens, so the long one joins it. Without the gathering the first step would hold
    # the short prompt alone.
    monkeypatch.setattr(scheduler, "GATHER_MAX_SECONDS", 5.0)
    short = await engine.tokenize("The sky is")
    long = await engine.tokenize("Write a long and detailed description of a quiet harbour town at dawn, " * 2)
    assert len(short) * 3 < len(long)
    on_their_way = [ARRIVALS.arriving(), ARRIVALS.arriving()]

    async def one(tokens: list[int], delay: float, arrival: contextlib.AbstractContextManager[object]) -> Chunk:
        with arrival:
            await asyncio.sleep(delay)
            req = dataclasses.replace(request("", max_tokens=1), prompt_token_ids=tokens)
            return (await run(engine, req))[1]

    before = engine.decode_steps
    lasts = await asyncio.gather(one(short, 0, on_their_way[0]), one(long, 0.02, on_their_way[1]))
    assert [last.completion_tokens for last in lasts] == [1, 1]
    assert engine.decode_steps - before == 1
    assert ARRIVALS.pending == 0


@pytest.mark.model
async def test_the_choices_of_one_request_start_in_one_step_however_late_each_is_queued(engine, monkeypatch) -> None:
    # A request's n choices reach the engine one by one (each prepared in a task of its own); the request stays on
    # its way until the last is queued (arrivals.expect_arrivals), so the idle engine reads them in one first step: the
    # batch a seeded request sees does not depend on how fast its choices were prepared.
    monkeypatch.setattr(scheduler, "GATHER_MAX_SECONDS", 5.0)
    tokens = await engine.tokenize("Name three rivers of Europe:")

    async def choice(delay: float) -> Chunk:
        await asyncio.sleep(delay)
        req = dataclasses.replace(request("", max_tokens=1), prompt_token_ids=tokens)
        return (await run(engine, req))[1]

    before = engine.decode_steps
    with ARRIVALS.arriving():
        expect_arrivals(3)
        lasts = await asyncio.gather(choice(0), choice(0.02), choice(0.04))
    assert [last.completion_tokens for last in lasts] == [1, 1, 1]
    assert engine.decode_steps - before == 1
    assert ARRIVALS.pending == 0


@pytest.mark.model
async def test_a_burst_is_served_first_come_first_served(engine, monkeypatch) -> None:
    """Twice as many requests as slots, arriving in one burst: slots go to waiting requests in arrival order
    (the waiting queue is FIFO), prompts are read in admission order, so no request gets its first token in an
    earlier step than one that arrived before it: every request's wait is bounded by its arrival rank."""
    seated: list[str] = []
    first_token_step: dict[str, int] = {}
    real_seat, real_post = scheduler.DecodeLoop._seat, scheduler.DecodeLoop._post

    def seat(self, sequence, slot_index, reuse):  # type: ignore[no-untyped-def]
        seated.append(sequence.request.request_id)
        return real_seat(self, sequence, slot_index, reuse)

    def post(self, sequence, item):  # type: ignore[no-untyped-def]
        if isinstance(item, Chunk) and item.completion_tokens:
            first_token_step.setdefault(sequence.request.request_id, self.steps)
        return real_post(self, sequence, item)

    monkeypatch.setattr(scheduler.DecodeLoop, "_seat", seat)
    monkeypatch.setattr(scheduler.DecodeLoop, "_post", post)
    words = ["apple", "river", "stone", "cloud", "maple", "tiger", "ocean", "piano"]
    prompts = [
        f"{word} {other} story number {i}:"
        for i, (word, other) in enumerate(zip(words * 2, words[::-1] * 2, strict=True))
    ]
    # Tokenized first, so each request reaches the engine's queue the moment its task starts: in rank order.
    requests = [
        dataclasses.replace(req, prompt_token_ids=tuple(await engine.tokenize(req.prompt)))
        for req in (request(p, max_tokens=4 + 2 * rank, ignore_eos=True) for rank, p in enumerate(prompts))
    ]
    results = await asyncio.gather(*(run(engine, r) for r in requests))
    assert all(last.finish_reason is FinishReason.LENGTH for _, last in results)
    ranks = {r.request_id: rank for rank, r in enumerate(requests)}
    assert [ranks[request_id] for request_id in seated if request_id in ranks] == list(range(len(requests)))
    steps = [first_token_step[r.request_id] for r in requests]
    assert steps == sorted(steps), steps


@pytest.mark.model
async def test_per_slot_logprobs_of_a_long_context_do_not_depend_on_a_neighbour(per_slot_engine) -> None:
    """Past 256 cells a lone sequence's stream spans 512 and llama.cpp's CPU flash attention splits it into one
    chunk per thread, which rounds otherwise than the one pass it takes beside a neighbour: the per-slot layout
    runs without flash attention (engine.flash_attention), so even the log probabilities are bit-identical."""
    engine = per_slot_engine
    prompt = " ".join(str(i) for i in range(1, 130)) + " The capital of France is"
    long = request(prompt, max_tokens=12, logprobs=0, ignore_eos=True)
    alone = [c.logprobs for c in [c async for c in engine.generate(long)]]
    beside, _ = await asyncio.gather(
        _logprobs(engine, dataclasses.replace(long, request_id=uuid.uuid4().hex)),
        run(engine, request("Count to one thousand: 1, 2, 3,", max_tokens=40, ignore_eos=True)),
    )
    assert len(engine._loop._slots[0].cached) > 256 or any(len(s.cached) > 256 for s in engine._loop._slots)
    assert beside == alone


async def _logprobs(engine: LlamaCppEngine, req: GenerationRequest) -> list[object]:
    return [c.logprobs async for c in engine.generate(req)]


@pytest.mark.model
async def test_a_running_decode_loop_makes_the_gil_change_hands_every_100_microseconds(engine) -> None:
    # Python's 5 ms default left the decode thread waiting for the event loop's whole turn on a step's tokens
    # before each llama_decode (scheduler.GIL_SWITCH_INTERVAL_SECONDS).
    await run(engine, request("Hi", max_tokens=1))
    assert sys.getswitchinterval() == pytest.approx(scheduler.GIL_SWITCH_INTERVAL_SECONDS)
