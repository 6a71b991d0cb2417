"""The batched decode loop: one thread owns a llama.cpp context with several sequences (slots) in its KV cache.

The KV cache is either one pool of cells every slot draws from (llama.cpp's unified KV cache) or a stream per
slot (kv_memory.py). In a pool, a waiting request is admitted, first come first served, when a slot is free and
the pool has room for all its sequence may write (prompt + max_new_tokens), idle slots' cached prefixes evicted
least recently used first; otherwise it waits at the head of the queue until running sequences finish, so a
decode never runs out of cells and no answer is cut short for want of them.

Each step it admits waiting requests into free slots, then builds one batch holding the next token of every
decoding sequence plus as much pending prompt as fits (chunked prefill, so a long prompt never stalls the
others' next token), runs a single llama_decode, and samples one token for every sequence that has logits.
A finished sequence's KV cells stay in its slot so a later prompt with the same prefix can skip that part of
its prefill (prefix caching); a cancelled sequence's cells are freed at once. A prompt that shares a long prefix
with a sequence still running (the `n` choices of one request arrive as n identical prompts) copies that
sequence's cells instead of computing them again (DecodeLoop._follow).

A failure is contained to the requests it concerns: one sequence's admission, batch rows or sampling fail
that sequence only; llama_decode failing (a status or an exception) fails the sequences in its batch. Only a
failure in the loop's shared bookkeeping (freeing KV cells, handing results over) stops the loop.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from llm_inference.engines.arrivals import ARRIVALS, arrived
from llm_inference.engines.base import Chunk, FinishReason, GenerationRequest, TokenLogprob
from llm_inference.engines.llamacpp.grammar import CompiledGrammar, free_grammar
from llm_inference.engines.llamacpp.handoff import Handoff
from llm_inference.engines.llamacpp.logits import LogprobReader, TokenBytes
from llm_inference.engines.llamacpp.sampler import build_constrained_sampler, build_sampler, free_sampler, sample
from llm_inference.engines.text import IncrementalText, StopMatcher
from llm_inference.errors import ContextOverflow, EngineFailure

log = logging.getLogger(__name__)

Emit = Callable[[Chunk | BaseException], None]  # called on the sequence's event loop, never on the decode thread


@dataclass(eq=False)
class Sequence:
    """One request's life in the decode loop. Only the loop thread mutates it, except `cancelled`."""

    request: GenerationRequest
    prompt: list[int]
    emit: Emit
    handoff: Handoff  # its event loop's inbox (handoff.for_running_loop())
    max_new_tokens: int  # max_tokens, clipped to the room left in the sequence's context
    cancelled: bool = False
    slot: int = -1
    n_past: int = 0  # tokens of this sequence already in the KV cache
    next_token: int | None = None  # sampled but not yet decoded
    generated: int = 0
    sampler: Any = None
    # Structured outputs: the grammar sampler compiled for this request, until its sampler chain takes it.
    grammar: CompiledGrammar | None = None
    text: IncrementalText = field(default_factory=IncrementalText)
    stops: StopMatcher | None = None
    admitted: int = 0  # admission order: older prompts prefill first
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None  # when it got a slot: the end of its queue time
    cancelled_at_step: int | None = None  # the loop's step count when cancellation was asked for
    released_at_step: int | None = None  # the loop's step count when its slot was freed
    # With SamplingParams.prompt_logprobs: the prompt tokens' log probabilities scored so far, until the first
    # chunk carries them (then None again).
    prompt_scores: list[TokenLogprob] | None = None
    # Prefix sharing: the running sequence whose KV cells for this prompt's first `share` tokens this one waits
    # to copy instead of computing them (DecodeLoop._follow).
    source: Sequence | None = None
    share: int = 0

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.prompt)


@dataclass
class Slot:
    cached: list[int] = field(default_factory=list)  # tokens whose KV cells this slot still holds
    sequence: Sequence | None = None
    reserved: int = 0  # pool cells its sequence may come to hold: prompt + max_new_tokens
    last_used: int = 0  # admission count when it was last seated: idle prefixes are evicted oldest first


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):  # the shorter list bounds the common prefix
        if x != y:
            break
        n += 1
    return n


def first_half_of_prompts(pending: list[int], batch_size: int) -> int:
    """Prompt tokens a step takes while nobody decodes: whole prompts, in order, until they are more than half
    of the waiting prompts and hold at least half of their tokens (so at least the first one), within the batch
    (DecodeLoop._fill_batch). More than half of the prompts, not just half: the median request of a burst
    (of 8, the 5th) then starts streaming after the first step, not after both."""
    total, taken = sum(pending), 0
    for count, remaining in enumerate(pending, start=1):
        taken += remaining
        if 2 * taken >= total and 2 * count > len(pending):
            break
    return min(taken, batch_size)


# A burst of requests is gathered before the first step (DecodeLoop._gather_burst): for at most this long,
# looking again at least this often (a request that ends without reaching an engine does not wake the loop), and
# once a burst is seen until no more came for a quiet pause.
GATHER_MAX_SECONDS = 0.05
GATHER_POLL_SECONDS = 0.001
GATHER_QUIET_SECONDS = 0.005

# A prompt waits for a running sequence's KV cells only for at least this many tokens it would not otherwise
# have (its whole prompt always: DecodeLoop._follow); fewer are cheaper to compute than a step's wait.
MIN_SHARED_TOKENS = 16
# How long a thread holding the GIL keeps it from one that asks for it (Python's default is 5 ms). The GIL passes
# between the decode thread, the event loop and the tokenizer's worker thread several times a step: the event
# loop holds it through its whole turn on a step's tokens (SSE frames, the socket) while the decode thread
# waits for it to start the next llama_decode. Set for the process when a decode loop starts. Measured at one
# client, in paired rounds against the default (8 rounds, 2-core AMD EPYC): tok/s 1.06x [1.00, 1.12], TTFT p50
# 0.91x [0.83, 1.00], ITL p50 0.94x [0.88, 1.01]; at 8 clients TTFT p99 0.92x [0.90, 0.94] (docs/benchmarks.md).
GIL_SWITCH_INTERVAL_SECONDS = 0.0001
# Prompt rows whose logits one step keeps for a sequence that scores its prompt (SamplingParams.prompt_logprobs):
# llama.cpp holds a row of n_vocab floats per row (200 KB for a 49k vocabulary, 500 KB for 128k), and keeps
# the buffer at its largest.
SCORED_ROWS_PER_STEP = 256


class DecodeLoop(threading.Thread):
    def __init__(
        self,
        model: Any,
        ctx: Any,
        *,
        slots: int,
        context_per_slot: int,
        batch_size: int,
        prefill_chunk: int,
        pool_tokens: int | None = None,
        stop_tokens: frozenset[int] = frozenset(),
        marker_tokens: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(name="llamacpp-decode", daemon=True)
        self._arrivals = ARRIVALS
        self._model, self._ctx = model, ctx
        self._vocab = model.vocab
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        # Tokens that end a generation: the vocabulary's end-of-generation ones and `stop_tokens` (a tokenizer
        # repo's EOS). Found once here, so sampling tests a set per token instead of calling into llama.cpp; a
        # request with ignore_eos may not draw them at all (sampler.build_sampler).
        self._end_tokens = stop_tokens | {
            t for t in range(self._n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)
        }
        # Control tokens written out as text for requests that read tool calls (SamplingParams.tool_markers).
        self._marker_tokens = marker_tokens
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._slots = [Slot() for _ in range(slots)]
        self._context_per_slot = context_per_slot
        # The cells of the pool every slot shares; None with a KV stream per slot (each holds a whole context).
        self._pool_tokens = pool_tokens
        self._batch_size = batch_size
        self._prefill_chunk = prefill_chunk
        self._batch = llama_cpp.llama_batch_init(batch_size, 0, 1)
        self._piece = ctypes.create_string_buffer(256)
        self._logprobs = LogprobReader(ctx, self._n_vocab, TokenBytes(self._vocab))
        # Prompt rows of this step to score after its decode: (sequence, first batch row, first position, rows).
        self._scored: list[tuple[Sequence, int, int, int]] = []
        self._followers: list[Sequence] = []  # sequences waiting to copy a running sequence's cells, oldest first
        # Copying cells between KV streams: serialized (DecodeLoop._copy_cells), or, for models with sliding-window
        # attention, whose serialized state leaves out the cells outside the window, whole streams.
        # In a pool, cells are shared instead (llama_memory_seq_cp adds a sequence to cells it does not copy).
        self._whole_stream_copies = pool_tokens is None and llama_cpp.llama_model_n_swa(model.model) > 0
        self._waiting: collections.deque[Sequence] = collections.deque()
        # What this step produced for the event loops: handed over in one wake-up per loop and step, not one
        # per token (each cross-thread call writes to the loop's self-pipe).
        self._outbox: list[tuple[Sequence, Chunk | BaseException]] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._admissions = 0
        self.steps = 0  # decode steps done: progress that a watchdog can read
        self.prefix_tokens_reused = 0  # prompt tokens whose KV cells came from the prefix cache
        self.prefix_tokens_shared = 0  # prompt tokens whose KV cells were copied from a running sequence
        self.prompt_tokens_prefilled = 0  # prompt tokens computed (put in a batch)
        self.fatal: BaseException | None = None

    # -- called from the event loop ---------------------------------------------------------------------------
    def submit(self, sequence: Sequence) -> None:
        with self._wake:
            self._waiting.append(sequence)
            # Counted down under the lock the gathering reads the count under: the request is always either
            # waiting here or counted as on its way.
            arrived()
            self._wake.notify()

    def cancel(self, sequence: Sequence) -> None:
        sequence.cancelled_at_step = self.steps
        sequence.cancelled = True
        with self._wake:
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()

    @property
    def running(self) -> int:
        return sum(1 for s in self._slots if s.sequence is not None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def active_kv_cells(self) -> int:
        """KV cells held by sequences being decoded. A finished sequence's cells stay as a prefix cache, but any
        new request may take them, so (as vLLM counts its cached free blocks) they do not count as in use."""
        return sum(len(slot.cached) for slot in self._slots if slot.sequence is not None)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
        try:
            while self._next_step():
                pass
            self._flush()
        except BaseException as exc:  # a bug here must not leave clients waiting forever
            log.exception("llama.cpp decode loop died")
            self.fatal = exc
            for sequence in [s.sequence for s in self._slots if s.sequence] + list(self._waiting):
                self._post(sequence, EngineFailure("the llama.cpp decode loop stopped"))
            self._flush()
        finally:
            llama_cpp.llama_batch_free(self._batch)

    def _idle(self) -> bool:
        return not self._waiting and all(s.sequence is None for s in self._slots)

    def _next_step(self) -> bool:
        if self._idle():
            self._flush()  # the last step's results go out before the thread sleeps
        with self._wake:
            woke_from_idle = self._idle()
            while not self._stopping and self._idle():
                self._wake.wait()
            if self._stopping:
                return False
            if woke_from_idle:
                self._gather_burst()
        self._drop_cancelled()
        if self._followers:
            self._adopt_orphans()
        self._admit()
        batch_rows = self._fill_batch()
        # The last step's tokens are handed over only now, just before llama_decode releases the GIL, so that the
        # event loop's work on them (the SSE frames) overlaps the decode rather than this thread's batch building.
        self._flush()
        if not batch_rows:
            return True
        failure = self._decode()
        self.steps += 1
        if failure:
            self._fail({seq for seq, _ in batch_rows}, failure)
            return True
        if self._scored and (failed := self._score_prompts()):
            batch_rows = [(sequence, row) for sequence, row in batch_rows if sequence not in failed]
        if self._followers:
            batch_rows += self._share_computed_prefixes(batch_rows)
        for sequence, row in batch_rows:
            if row >= 0:
                try:
                    self._sample(sequence, row)
                except Exception as exc:  # one sequence's failure (sampler, detokenizer) ends only that sequence
                    self._fail_one(sequence, "sampling", exc)
        return True

    def _gather_burst(self) -> None:
        """Requests that arrive together (clients starting at once, a batch) reach this thread one by one, as
        the event loop reads and prepares them. Gathering them lets the first step see the whole burst, so its
        prompts are read in few steps rather than each decoding stream pausing for the prompts that arrived a
        moment later. Called with self._wake held, only when the engine was idle; submit() wakes it.

        First, while the server holds requests on their way to an engine (engines/arrivals.py), wait for them.
        Then, if that made a burst (more than one request waiting), wait until no more came for
        GATHER_QUIET_SECONDS: clients of a burst whose requests the server has not read yet. A lone request
        finds none on its way and starts at once. All of it within GATHER_MAX_SECONDS."""
        deadline = time.monotonic() + GATHER_MAX_SECONDS
        quiet_from = None  # when the last request of the burst arrived, once a burst is seen
        seen = len(self._waiting)
        while not self._stopping:
            now = time.monotonic()
            if len(self._waiting) != seen:
                seen, quiet_from = len(self._waiting), now
            if self._arrivals.pending > 0:
                wait = GATHER_POLL_SECONDS
            elif seen > 1:
                quiet_from = now if quiet_from is None else quiet_from
                wait = quiet_from + GATHER_QUIET_SECONDS - now
            else:
                return
            wait = min(wait, deadline - now)
            if wait <= 0:
                return
            self._wake.wait(wait)

    def _decode(self) -> str | None:
        """Run the step's batch; None if it went through, else why not."""
        try:
            status = llama_cpp.llama_decode(self._ctx, self._batch)
        except Exception as exc:  # the binding raised instead of returning a status: it concerns the batch
            log.exception("llama_decode raised")
            return f"llama_decode raised {type(exc).__name__}: {exc}"
        return f"llama_decode returned {status}" if status != 0 else None

    def _fail_one(self, sequence: Sequence, stage: str, exc: Exception) -> None:
        log.exception(f"{stage} failed", extra={"request_id": sequence.request.request_id})
        self._fail({sequence}, f"{stage} failed: {exc}")

    def _post(self, sequence: Sequence, item: Chunk | BaseException) -> None:
        self._outbox.append((sequence, item))

    def _flush(self) -> None:
        if not self._outbox:
            return
        by_loop: dict[Handoff, list[tuple[Emit, Chunk | BaseException]]] = {}
        for sequence, item in self._outbox:
            by_loop.setdefault(sequence.handoff, []).append((sequence.emit, item))
        self._outbox = []
        for handoff, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting for these
                handoff.post(items)

    def _drop_cancelled(self) -> None:
        for slot_index, slot in enumerate(self._slots):
            if slot.sequence is not None and slot.sequence.cancelled:
                self._release(slot_index, keep_cache=False)
        if any(s.cancelled for s in self._waiting):
            with self._wake:
                cancelled = [s for s in self._waiting if s.cancelled]
                self._waiting = collections.deque(s for s in self._waiting if not s.cancelled)
            for sequence in cancelled:
                free_grammar(sequence.grammar)

    @property
    def reserved_kv_cells(self) -> int:
        """Pool cells promised to running sequences (each its prompt + max_new_tokens) or held by idle prefixes."""
        return sum(slot.reserved if slot.sequence is not None else len(slot.cached) for slot in self._slots)

    def _admit(self) -> None:
        while True:
            free = [i for i, slot in enumerate(self._slots) if slot.sequence is None]
            with self._wake:
                if not free or not self._waiting:
                    return
                sequence = self._waiting[0]
            if self._pool_tokens is not None and self._need(sequence) > self._pool_tokens:
                # The engine clips every request to the context, itself within the pool: never expected.
                with self._wake:
                    self._waiting.popleft()
                self._post(sequence, ContextOverflow(len(sequence.prompt), self._pool_tokens))
                free_grammar(sequence.grammar)
                continue
            reuse, slot_index = self._choose_slot(sequence, free)
            if not self._make_room(sequence, slot_index):
                return  # first come, first served: nobody overtakes the head of the queue
            with self._wake:
                self._waiting.popleft()
            try:
                self._seat(sequence, slot_index, reuse)
            except Exception as exc:  # fails this request; its slot (if it got one) is freed for the next
                self._fail_one(sequence, "admission", exc)

    @staticmethod
    def _need(sequence: Sequence) -> int:
        return len(sequence.prompt) + sequence.max_new_tokens

    def _choose_slot(self, sequence: Sequence, free: list[int]) -> tuple[int, int]:
        """(prompt tokens its cache gives, free slot) for `sequence`."""
        prompt = sequence.prompt
        if sequence.request.sampling.prompt_logprobs is not None:
            # Every prompt row's logits are needed, and cells that are reused or copied have none: the prompt is
            # computed whole, in the free slot whose cache is the least worth keeping.
            return 0, min(free, key=lambda i: (len(self._slots[i].cached), self._slots[i].last_used))
        # Prefer the free slot whose cached tokens share the longest prefix with this prompt.
        reuse, slot_index = max((_common_prefix(self._slots[i].cached, prompt), i) for i in free)
        return min(reuse, len(prompt) - 1), slot_index  # the last prompt token must be decoded for logits

    def _make_room(self, sequence: Sequence, slot_index: int) -> bool:
        """Whether the pool has cells for all `sequence` may write in `slot_index`, evicting idle slots' cached
        prefixes (least recently used first) if that makes room; False, evicting nothing, if even that would not.
        Shared cells (n choices, copied prefixes) count once per slot here, so the sum only overstates the cells
        llama.cpp holds: a decode never finds the pool full."""
        if self._pool_tokens is None:
            return True
        need = self._need(sequence)
        running = sum(slot.reserved for slot in self._slots if slot.sequence is not None)
        if running + need > self._pool_tokens:
            return False
        idle = sorted(
            (i for i, slot in enumerate(self._slots) if slot.sequence is None and slot.cached and i != slot_index),
            key=lambda i: self._slots[i].last_used,
        )
        held = sum(len(self._slots[i].cached) for i in idle)
        for i in idle:
            if running + need + held <= self._pool_tokens:
                break
            held -= len(self._slots[i].cached)
            llama_cpp.llama_memory_seq_rm(self._memory, i, -1, -1)
            self._slots[i].cached = []
        return True

    def _seat(self, sequence: Sequence, slot_index: int, reuse: int) -> None:
        params = sequence.request.sampling
        prompt = sequence.prompt
        slot = self._slots[slot_index]
        # The slot is the sequence's before any call that can fail, so that a failure frees it whole.
        slot.sequence, sequence.slot = sequence, slot_index
        slot.reserved = self._need(sequence)
        llama_cpp.llama_memory_seq_rm(self._memory, slot_index, reuse, -1)
        slot.cached, sequence.n_past = prompt[:reuse], reuse
        self._admissions += 1
        sequence.admitted = slot.last_used = self._admissions
        sequence.started_at = time.monotonic()
        # vLLM's repetition penalty counts the prompt's tokens too (sampler._add_penalties).
        penalized = prompt if params.repetition_penalty != 1 else ()
        if sequence.grammar is not None:
            sequence.sampler = build_constrained_sampler(
                params, sequence.grammar, self._n_vocab, context=self._context_per_slot, prompt=penalized
            )
        else:
            sequence.sampler = build_sampler(
                params, self._n_vocab, self._end_tokens, context=self._context_per_slot, prompt=penalized
            )
        sequence.stops = StopMatcher(params.stop)
        if params.prompt_logprobs is not None:
            sequence.prompt_scores = [self._logprobs.first(prompt[0])]
        elif not self._follow(sequence, may_wait=True):
            self.prefix_tokens_reused += reuse

    # -- prefix sharing ---------------------------------------------------------------------------------------
    # The n choices of one request arrive as n identical prompts at once, and each would compute the same KV
    # cells in its own slot (each slot is a KV stream of its own, so cells cannot be shared, only copied). So a
    # prompt whose prefix a running sequence holds, or is computing, copies that sequence's cells once they are
    # computed. A prompt identical to that of a sequence still reading it (a "twin") waits for the whole of it
    # and draws its first token from the same logits row, as llama-server's n_cmpl children do: it computes
    # nothing of its prompt, and its first token is drawn from exactly the distribution a lone run sees. A
    # sequence waits only for an older one, so it waits no longer than first come, first served would make it,
    # and one whose source goes away (cancelled, failed) looks for another or reads its prompt itself.

    def _follow(self, sequence: Sequence, *, may_wait: bool) -> bool:
        """Find a running sequence to copy this prompt's prefix from; copy now if its cells are computed, else
        wait for them (only when `may_wait`, or from an older sequence). False if none is worth it."""
        best: tuple[int, Sequence] | None = None
        prompt = sequence.prompt
        for slot in self._slots:
            other = slot.sequence
            if other is None or other is sequence or other.source is not None or other.cancelled:
                continue
            computed = len(slot.cached)
            # Positions below `computed` are in its cells; a prefilling sequence is computing its whole prompt.
            common = _common_prefix(other.prompt if other.prefilling else slot.cached, prompt)
            twin = other.prefilling and common == len(prompt) == len(other.prompt)
            share = common if twin else min(common, len(prompt) - 1)
            if not twin and share - sequence.n_past < MIN_SHARED_TOKENS:
                continue
            if share > computed and not (may_wait or other.admitted < sequence.admitted):
                continue
            if best is None or share > best[0]:
                best = (share, other)
        if best is None:
            return False
        sequence.share, sequence.source = best
        self._followers.append(sequence)
        if sequence.share <= len(self._slots[sequence.source.slot].cached):
            self._copy_prefix(sequence)  # computed already: no wait
        return True

    def _adopt_orphans(self) -> None:
        """Followers whose source left (cancelled, failed) before its cells were computed: another source, or
        their own prefill from where their slot's cache left them."""
        for follower in list(self._followers):
            source = follower.source
            assert source is not None
            if source.slot >= 0 and self._slots[source.slot].sequence is source:
                continue
            self._unfollow(follower)
            if not self._follow(follower, may_wait=False):
                self.prefix_tokens_reused += follower.n_past

    def _share_computed_prefixes(self, batch_rows: list[tuple[Sequence, int]]) -> list[tuple[Sequence, int]]:
        """After a decode: followers whose shared cells are now computed copy them. Returns the twins with the
        row to draw their first token from (their source's last prompt row, computed in this step)."""
        rows: dict[Sequence, int] | None = None
        twins: list[tuple[Sequence, int]] = []
        for follower in list(self._followers):
            source = follower.source
            assert source is not None
            if self._slots[source.slot].sequence is not source or len(self._slots[source.slot].cached) < follower.share:
                continue  # gone (the next step finds it another source) or not there yet
            row = -1
            if follower.share == len(follower.prompt):
                rows = rows if rows is not None else dict(batch_rows)
                row = rows.get(source, -1)
                if row < 0:  # no row to draw from: its last prompt token is decoded as a prefix-cache hit's is
                    follower.share -= 1
            if self._copy_prefix(follower) and row >= 0:
                twins.append((follower, row))
        return twins

    def _copy_prefix(self, follower: Sequence) -> bool:
        source = follower.source
        assert source is not None
        try:
            self._copy_cells(source.slot, follower.slot, follower.n_past, follower.share)
        except Exception as exc:  # this sequence fails alone; the source is untouched
            self._fail_one(follower, "copying a shared prefix", exc)
            return False
        self._unfollow(follower)
        self._slots[follower.slot].cached = follower.prompt[: follower.share]
        follower.n_past = follower.share
        self.prefix_tokens_shared += follower.share
        return True

    def _unfollow(self, follower: Sequence) -> None:
        follower.source = None
        self._followers.remove(follower)

    def _copy_cells(self, source: int, target: int, start: int, keep: int) -> None:
        """Give sequence `target`, which holds positions below `start`, the cells of `source` from `start` to
        `keep`.

        In a pool, llama_memory_seq_cp adds `target` to those cells: nothing is copied and nothing more is held.

        Between streams llama.cpp's llama_memory_seq_cp copies only whole streams (its seq_cp asserts p0, p1 <= 0
        across streams, and the copy, done at the next decode, moves every cell of every layer: a whole context's
        worth, 190 MB for the default model at 8192 tokens). Its sequence state API instead serializes the cells
        the sequence holds (get) and places them in another stream (set): proportional to the prompt, about
        1 ms for 120 tokens here. The state leaves out cells outside a sliding window, which a shorter prefix
        may need, so models with one copy whole streams.
        """
        if self._pool_tokens is not None:
            llama_cpp.llama_memory_seq_cp(self._memory, source, target, start, keep)
            return
        if self._whole_stream_copies:
            llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)
        else:
            # A buffer per copy, not one kept: a long prompt's cells are hundreds of MB on a larger model.
            size = llama_cpp.llama_state_seq_get_size(self._ctx, source)
            state = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(self._ctx, state, size, source)
            if not written or llama_cpp.llama_state_seq_set_data(self._ctx, state, written, target) != written:
                raise RuntimeError(f"llama.cpp could not copy the KV cells of sequence {source} to {target}")
        llama_cpp.llama_memory_seq_rm(self._memory, target, keep, -1)

    def _fill_batch(self) -> list[tuple[Sequence, int]]:
        """Put every decoding sequence's next token in the batch, then pending prompt: at most `prefill_chunk`
        tokens of it while any sequence decodes; with nobody decoding, whole prompts until they are more than
        half of them and hold half of their tokens (first_half_of_prompts), within the batch.

        A step's time grows about linearly with its tokens on a few cores, and a decoding sequence waits for
        the whole step, so every step with prompt in it is a pause in every stream. Fewer, larger prompt steps
        mean fewer pauses per stream; that is what the tail of the inter-token gaps counts (a budget of 64
        tokens raised its 99th percentile, docs/cpu.md). With nobody decoding, a burst of prompts
        read in one step would make every request wait for all of them; read in two halves, the first half
        (the median request in it) starts streaming after about half the time and pauses once, for the second
        half's step, and the last request waits as long as it would behind one step of them all.

        Returns (sequence, row whose logits to sample); the row is -1 when the step only advanced a
        prompt that is not complete yet.
        """
        n = 0
        rows: list[tuple[Sequence, int]] = []
        self._scored = []
        active = [slot.sequence for slot in self._slots if slot.sequence is not None]
        for sequence in active:
            if sequence.next_token is not None:
                try:
                    self._put(n, sequence.next_token, sequence.n_past, sequence.slot, True)
                except Exception as exc:  # nothing of this sequence is in the batch: it leaves alone
                    self._fail_one(sequence, "batch building", exc)
                    continue
                self._slots[sequence.slot].cached.append(sequence.next_token)
                sequence.n_past += 1
                sequence.next_token = None
                rows.append((sequence, n))
                n += 1
        prefilling = sorted(
            (s for s in active if s.prefilling and s.released_at_step is None and s.source is None),
            key=lambda s: s.admitted,
        )
        if n == 0:
            limit = first_half_of_prompts([len(s.prompt) - s.n_past for s in prefilling], self._batch_size)
        else:
            limit = min(self._batch_size, n + self._prefill_chunk)
        for sequence in prefilling:
            room = limit - n
            if room <= 0:
                break
            start, first_row = sequence.n_past, n
            take = min(room, len(sequence.prompt) - start)
            scored = sequence.prompt_scores is not None  # every row's logits, for the prompt's log probabilities
            if scored:
                take = min(take, SCORED_ROWS_PER_STEP)
            last = len(sequence.prompt) - 1
            try:
                for pos in range(start, start + take):
                    self._put(n, sequence.prompt[pos], pos, sequence.slot, scored or pos == last)
                    n += 1
            except Exception as exc:  # its rows written so far are dropped: the next sequence overwrites them
                n = first_row
                self._fail_one(sequence, "batch building", exc)
                continue
            self._slots[sequence.slot].cached.extend(sequence.prompt[start : start + take])
            sequence.n_past += take
            self.prompt_tokens_prefilled += take
            if scored:
                self._scored.append((sequence, first_row, start, take))
            rows.append((sequence, -1 if sequence.prefilling else n - 1))
        self._batch.n_tokens = n
        return rows

    def _put(self, row: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        batch = self._batch
        batch.token[row] = token
        batch.pos[row] = pos
        batch.n_seq_id[row] = 1
        batch.seq_id[row][0] = seq_id
        batch.logits[row] = logits

    def _piece_of(self, token: int, markers: bool = False) -> bytes:
        special = markers and token in self._marker_tokens
        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, special)
        return self._piece.raw[:n] if n > 0 else b""

    def _score_prompts(self) -> set[Sequence]:
        """Each prompt row of this step scores the prompt token after it (the last row scores the first generated
        token instead, in _sample). Returns the sequences that failed doing it."""
        failed: set[Sequence] = set()
        for sequence, first_row, start, rows in self._scored:
            scores, k = sequence.prompt_scores, sequence.request.sampling.prompt_logprobs
            if sequence.cancelled or scores is None or k is None:
                continue
            prompt = sequence.prompt
            try:
                for i in range(min(rows, len(prompt) - 1 - start)):
                    scores.append(self._logprobs.token(first_row + i, prompt[start + i + 1], k))
            except Exception as exc:  # as a sampling failure: it ends this sequence only
                self._fail_one(sequence, "scoring the prompt", exc)
                failed.add(sequence)
        self._scored = []
        return failed

    def _sample(self, sequence: Sequence, row: int) -> None:
        if sequence.cancelled:
            return
        if sequence.prompt_scores is not None and sequence.max_new_tokens == 0:  # the prompt scored, no output
            self._finish(sequence, self._chunk(sequence, "", FinishReason.LENGTH))
            return
        token = sample(sequence.sampler, self._ctx, row)
        params = sequence.request.sampling
        assert sequence.stops is not None
        ends = token in self._end_tokens
        if ends and not params.ignore_eos:
            # The end token is no part of the output: no text, not counted, no log probability.
            tail = sequence.stops.push(sequence.text.flush())[0] + sequence.stops.flush()
            self._finish(sequence, self._chunk(sequence, tail, FinishReason.STOP))
            return
        sequence.generated += 1
        logprobs = () if params.logprobs is None else (self._logprobs.token(row, token, params.logprobs),)
        piece, stopped = sequence.stops.push(sequence.text.push(self._piece_of(token, params.tool_markers)))
        if stopped:
            self._finish(sequence, self._chunk(sequence, piece, FinishReason.STOP, logprobs))
        elif sequence.generated >= sequence.max_new_tokens:
            tail = piece + sequence.stops.flush() + sequence.text.flush()
            self._finish(sequence, self._chunk(sequence, tail, FinishReason.LENGTH, logprobs))
        else:
            sequence.next_token = token
            self._post(sequence, self._chunk(sequence, piece, None, logprobs))

    def _chunk(
        self, sequence: Sequence, text: str, finish_reason: FinishReason | None, logprobs: tuple[TokenLogprob, ...] = ()
    ) -> Chunk:
        """The step's chunk: the log probability of the token drawn in it (held-back text or not, as vLLM), and on
        the first chunk the prompt's."""
        chunk = Chunk(text, len(sequence.prompt), sequence.generated, finish_reason, logprobs=logprobs)
        if sequence.prompt_scores is not None:
            chunk = dataclasses.replace(chunk, prompt_logprobs=tuple(sequence.prompt_scores))
            sequence.prompt_scores = None
        return chunk

    def _finish(self, sequence: Sequence, last: Chunk) -> None:
        # Free the slot first: a client that has its last chunk must find the engine's counts already down.
        self._release(sequence.slot, keep_cache=True)
        self._post(sequence, last)

    def _release(self, slot_index: int, *, keep_cache: bool) -> None:
        slot = self._slots[slot_index]
        sequence, slot.sequence, slot.reserved = slot.sequence, None, 0
        if not keep_cache:
            llama_cpp.llama_memory_seq_rm(self._memory, slot_index, -1, -1)
            slot.cached = []
        if sequence is not None:
            if sequence.source is not None:
                self._unfollow(sequence)
            if sequence.sampler is not None:
                free_sampler(sequence.sampler)
                sequence.sampler = None
            free_grammar(sequence.grammar)  # one that never reached a sampler chain
            # Last: another thread that sees the release recorded must also find the cells already freed.
            sequence.released_at_step = self.steps

    def _fail(self, sequences: set[Sequence], reason: str) -> None:
        log.error("llama.cpp generation failed", extra={"reason": reason, "sequences": len(sequences)})
        for sequence in sequences:
            self._post(sequence, EngineFailure(f"generation failed in llama.cpp: {reason}"))
            # A sequence that failed before it got a slot has none to free (its slot index is still -1).
            if sequence.slot >= 0 and self._slots[sequence.slot].sequence is sequence:
                self._release(sequence.slot, keep_cache=False)
            free_grammar(sequence.grammar)
