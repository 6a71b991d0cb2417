"""llama.cpp engine: one model, one context with a slot per concurrent request (their KV cells in one shared pool,
or a stream each: kv_memory.py), one decode thread.

All decoding happens on the DecodeLoop's own thread (llama.cpp contexts are not thread-safe, and hopping
between pool threads costs throughput). Tokenizing only reads the vocabulary, so it runs beside it.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import os
from collections.abc import AsyncGenerator, Mapping
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp._internals import LlamaModel

from llm_inference.engines.base import (
    ChatMessage,
    Chunk,
    Embedding,
    EngineInfo,
    EngineStats,
    FinishReason,
    GenerationRequest,
)
from llm_inference.engines.config import LlamaCppConfig
from llm_inference.engines.llamacpp import handoff
from llm_inference.engines.llamacpp.chat_tokens import ChatTokens
from llm_inference.engines.llamacpp.embedding import Embedder
from llm_inference.engines.llamacpp.grammar import compile_grammar
from llm_inference.engines.llamacpp.kv_memory import (
    KV_CACHE_TYPES,
    MIB,
    UNQUANTIZED,
    KvCacheDoesNotFit,
    bytes_per_token,
    memory_limit,
    plan_kv,
)
from llm_inference.engines.llamacpp.quantize import file_type_name, observe_native_line, quantized_model
from llm_inference.engines.llamacpp.scheduler import DecodeLoop, Sequence
from llm_inference.errors import ContextOverflow, EngineDead, InvalidParameter

log = logging.getLogger(__name__)
_native_log = logging.getLogger("llama_cpp.native")


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]  # a ctypes callback type
def _route_native_log(level: int, text: bytes, _: ctypes.c_void_p) -> None:
    # llama.cpp would print its own lines to stderr; route them through our logging instead, warnings and
    # errors (ggml levels 3 and 4) as warnings and everything else at debug level.
    line = text.decode(errors="replace").rstrip()
    observe_native_line(level, line)
    if level in (3, 4):
        _native_log.warning(line)
    elif _native_log.isEnabledFor(logging.DEBUG):
        _native_log.debug(line)


llama_cpp.llama_log_set(_route_native_log, ctypes.c_void_p(0))

# Tokens per llama_decode (every decoding sequence's next token plus prompt), and per compute pass inside it.
# As llama-server (n_batch 2048, n_ubatch 512): prompts that arrive together while nobody decodes are read in
# one call, so no stream starts decoding only to stall behind the next prompt chunk.
BATCH_SIZE = 2048
UBATCH_SIZE = 512


def threads_for(config: LlamaCppConfig) -> int:
    return config.threads or usable_cpus()


def offloaded_layers(requested: int | None) -> int:
    """Layers to put on the GPU: as requested (-1: all), or, unset, all of them when this llama.cpp build can
    offload (built with CUDA, as in the CUDA image) and none otherwise."""
    if requested is not None:
        return requested
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def usable_cpus(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may really use: its affinity, capped by a cgroup v2 CPU quota (a pod's CPU limit).

    Not os.cpu_count(): in a pod limited to 2 CPUs on a 64-core node that says 64, and 64 compute threads that
    wait for each other at every layer's barrier, under a 2-CPU quota, run far slower than 2.
    """
    # sched_getaffinity is Linux-only; elsewhere every core counts.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):  # no cgroup v2 file, or one this does not understand: the affinity stands
        pass
    return cpus


def kv_bytes_per_token(model: LlamaModel, cache_type: str) -> int:
    """One token's KV cells in bytes, from the model's dimensions (its GGUF may state K and V head sizes apart)."""
    raw = model.model
    n_head = llama_cpp.llama_model_n_head(raw)
    n_head_kv = llama_cpp.llama_model_n_head_kv(raw) or n_head
    metadata = model.metadata()
    arch = metadata.get("general.architecture", "llama")
    head_dim = llama_cpp.llama_model_n_embd(raw) // max(1, n_head)
    head_k = int(metadata.get(f"{arch}.attention.key_length", head_dim))
    head_v = int(metadata.get(f"{arch}.attention.value_length", head_dim))
    return bytes_per_token(llama_cpp.llama_model_n_layer(raw), n_head_kv, head_k, head_v, cache_type)


def flash_attention(layout: str, cache_type: str) -> int:
    """llama.cpp's flash attention setting for a KV layout and type.

    A quantized V cache is read only inside flash attention. Per-slot streams exist for outputs that do not
    depend on batch neighbours, and the CPU flash-attention kernel breaks that with an f16/f32 cache: a lone
    decoding sequence whose stream spans 512 cells or more takes a path that splits the KV range into one chunk
    per thread and merges them, while the same token beside others takes the single-pass path, and the two round
    differently (logits differed from the first step for a 412-token prompt; bit-identical with flash attention
    off, or with a q8_0 cache, which only the single-pass path reads). The pool keeps llama.cpp's choice.
    """
    if cache_type not in UNQUANTIZED:
        return int(llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED)
    if layout == "per-slot":
        return int(llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    return int(llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO)


def use_extra_buffers(weight_repack: str) -> bool:
    """Whether llama.cpp may put weights in its extra CPU buffer types (llama-server's --repack / --no-repack).

    They are repacked layouts for faster matrix products (Q4_0, IQ4_NL, Q8_0 and K-quants on AVX2/AVX-512 and
    Arm; other types stay in plain buffers) and, when llama.cpp is built with AMX, AMX tiles. The AMX buffer
    type crashed llama_decode (SIGSEGV) on multi-token batches with this project's Q4_1 model on an AMX Xeon,
    and AMX is the only extra type that takes Q4_1 weights, so `auto` turns them off only where AMX kernels
    are built in; everywhere else repacking stays on, as in llama-server.
    """
    if weight_repack != "auto":
        return weight_repack == "on"
    return b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info()


class LlamaCppEngine:
    def __init__(
        self,
        model: LlamaModel,
        ctx: Any,
        loop: DecodeLoop,
        chat: ChatTokens,
        info: EngineInfo,
        context_per_slot: int,
        kv_cells: int,
    ) -> None:
        self._model, self._ctx, self._loop = model, ctx, loop
        self._chat, self._info = chat, info
        self._context_per_slot = context_per_slot  # the most one sequence may hold
        self._kv_cells = kv_cells
        self._embedder = Embedder(model, context_per_slot, int(info.extra["threads"]))
        self._sequences: dict[str, Sequence] = {}  # in flight, by request id (tests follow one through the loop)
        self._closed = False

    @classmethod
    async def load(
        cls, model_path: Path, *, config: LlamaCppConfig, tokenizer_path: Path | None = None
    ) -> LlamaCppEngine:
        return await asyncio.to_thread(cls._load_blocking, model_path, config, tokenizer_path)

    @classmethod
    def _load_blocking(cls, model_path: Path, config: LlamaCppConfig, tokenizer_path: Path | None) -> LlamaCppEngine:
        threads = threads_for(config)
        if config.isq_type:
            assert config.isq_cache_dir is not None, "models/engine_config.py sets the ISQ cache directory"
            model_path = quantized_model(model_path, config.isq_type, config.isq_cache_dir, threads)
        model_params = llama_cpp.llama_model_default_params()
        model_params.use_extra_bufts = use_extra_buffers(config.weight_repack)
        gpu_layers = offloaded_layers(config.gpu_layers)
        model_params.n_gpu_layers = gpu_layers
        model = LlamaModel(path_model=str(model_path), params=model_params, verbose=False)
        slots = config.slots
        try:
            plan = plan_kv(
                layout=config.kv_cache_layout,
                slots=slots,
                trained_context=model.n_ctx_train(),
                context_length=config.context_length,
                pool_tokens=config.kv_cache_tokens,
                cache_type=config.kv_cache_type,
                per_token=kv_bytes_per_token(model, config.kv_cache_type),
                weights_bytes=model_path.stat().st_size,
                memory_fraction=config.kv_memory_fraction,
                limit=memory_limit(),
            )
        except KvCacheDoesNotFit:
            model.close()  # type: ignore[no-untyped-call]
            raise
        pooled = plan.layout == "pool"
        context_per_slot = plan.context_length
        params = llama_cpp.llama_context_default_params()
        # pool: one pool of cells shared by every sequence (llama.cpp's unified KV cache), so memory follows a
        # token budget rather than slots x the whole context; the decode loop admits a sequence only when the
        # pool has room for all it may write (DecodeLoop._make_room). per-slot: a stream of a whole context per
        # slot, where a sequence's attention never depends on its neighbours (docs/cpu.md "KV memory").
        params.n_ctx = plan.cells
        params.n_seq_max = slots
        params.kv_unified = pooled
        params.type_k = params.type_v = KV_CACHE_TYPES[config.kv_cache_type][0]
        params.flash_attn_type = flash_attention(plan.layout, config.kv_cache_type)
        params.n_batch, params.n_ubatch = BATCH_SIZE, UBATCH_SIZE
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            model.close()  # type: ignore[no-untyped-call]
            raise RuntimeError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens with a "
                f"LLM_KV_CACHE_TYPE={config.kv_cache_type} KV cache (its log above says why)"
            )
        kv_cells = int(llama_cpp.llama_n_ctx(ctx))
        chat = ChatTokens.of(model, tokenizer_path)
        loop = DecodeLoop(
            model,
            ctx,
            slots=slots,
            context_per_slot=context_per_slot,
            pool_tokens=kv_cells if pooled else None,
            batch_size=BATCH_SIZE,
            stop_tokens=chat.stop_tokens,
            marker_tokens=chat.marker_tokens(model),
            prefill_chunk=min(config.prefill_chunk, BATCH_SIZE),
        )
        loop.start()
        info = EngineInfo(
            backend="llamacpp",
            model_format="gguf",
            context_length=context_per_slot,
            quantization=file_type_name(model.metadata().get("general.file_type")),
            extra={
                "threads": str(threads),
                "slots": str(slots),
                "kv_cache_layout": plan.layout,
                "kv_cache_tokens": str(kv_cells),
                "kv_cache_type": config.kv_cache_type,
                "gpu_layers": str(gpu_layers),
                "weight_repack": "on" if model_params.use_extra_bufts else "off",
            },
            tool_format=chat.template.tool_format,
        )
        log.info(
            "llama.cpp model loaded",
            extra={
                "path": str(model_path),
                "context_length": context_per_slot,
                "slots": slots,
                "kv_cache_layout": plan.layout,
                "kv_cache_tokens": kv_cells,
                "kv_cache_type": config.kv_cache_type,
                "kv_cache_bytes": kv_cells * plan.bytes_per_token,
                "kv_cache_mib": round(kv_cells * plan.bytes_per_token / MIB, 1),
                "memory_limit_mib": round(plan.limit.bytes / MIB),
                "memory_limit_source": plan.limit.source,
                "threads": threads,
                "gpu_layers": gpu_layers,
                "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                "weight_repack": model_params.use_extra_bufts,
            },
        )
        return cls(model, ctx, loop, chat, info, context_per_slot, kv_cells)

    def info(self) -> EngineInfo:
        return self._info

    def stats(self) -> EngineStats:
        loop = self._loop
        usage = loop.active_kv_cells / self._kv_cells
        # Cells copied from a running sequence (n choices, a shared prefix) count as found, as reused ones do.
        hits = loop.prefix_tokens_reused + loop.prefix_tokens_shared
        return EngineStats(
            running=loop.running,
            waiting=loop.waiting,
            kv_cache_usage=usage,
            prefix_cache_queries=hits + loop.prompt_tokens_prefilled,
            prefix_cache_hits=hits,
        )

    @property
    def decode_steps(self) -> int:
        return self._loop.steps

    @property
    def prefix_tokens_reused(self) -> int:
        return self._loop.prefix_tokens_reused

    @property
    def prefix_tokens_shared(self) -> int:
        """Prompt tokens whose KV cells were copied from another running sequence (n choices of one prompt)."""
        return self._loop.prefix_tokens_shared

    @property
    def prompt_tokens_prefilled(self) -> int:
        """Prompt tokens computed: neither reused from the prefix cache nor copied."""
        return self._loop.prompt_tokens_prefilled

    async def check_health(self) -> None:
        if self._closed:
            raise EngineDead("the llama.cpp engine is closed")
        if self._loop.fatal is not None or not self._loop.is_alive():
            raise EngineDead("the llama.cpp decode loop stopped")

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        # parse_special: chat templates write control tokens (<|im_start|>) as text that must map to their ids.
        # A tokenizer repo that says whether prompts start with BOS overrides the GGUF's own flag; a prompt whose
        # chat template already wrote the BOS token gets no second one.
        gguf_specials = add_special and self._chat.add_bos is None
        tokens: list[int] = self._model.tokenize(text.encode(), add_bos=gguf_specials, special=True)
        bos = self._chat.bos
        if add_special and self._chat.add_bos and bos >= 0 and tokens[:1] != [bos]:
            tokens.insert(0, bos)
        if tokens or not add_special:
            return tokens
        # A text of only characters the tokenizer drops ("\x13") has no token, and a sequence needs one to
        # decode (with none, the decode loop would fail): start it as an empty document starts, from BOS.
        return [bos if bos >= 0 else self._model.token_eos()]

    async def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return await asyncio.to_thread(self._tokenize, text, add_special)

    def _detokenize(self, tokens: Seq[int]) -> str:
        # llama_detokenize rather than LlamaModel.detokenize, which asserts every piece fits 32 bytes.
        ids = (llama_cpp.llama_token * len(tokens))(*tokens)
        size = max(16, 8 * len(tokens))
        while True:
            buffer = ctypes.create_string_buffer(size)
            # remove_special=False keeps a BOS the ids hold; unparse_special writes control tokens as text.
            n = llama_cpp.llama_detokenize(self._model.vocab, ids, len(tokens), buffer, size, False, True)
            if n >= 0:
                return buffer.raw[:n].decode(errors="replace")
            size = -n  # too small: llama.cpp says how many bytes it needs

    async def detokenize(self, tokens: Seq[int]) -> str:
        return await asyncio.to_thread(self._detokenize, tokens)

    def vocab_size(self) -> int:
        return int(self._model.n_vocab())

    async def render_chat(self, messages: Seq[ChatMessage], tools: Seq[Mapping[str, Any]] | None = None) -> str:
        return self._chat.template.render(messages, tools)

    async def embed(self, texts: Seq[str]) -> list[Embedding]:
        await self.check_health()
        return await asyncio.to_thread(self._embed_blocking, texts)

    def _embed_blocking(self, texts: Seq[str]) -> list[Embedding]:
        # Plain text: a user's "<|im_start|>" is text here, not a control token.
        tokenized = [self._model.tokenize(text.encode(), add_bos=True, special=False) for text in texts]
        for index, tokens in enumerate(tokenized):
            if len(tokens) > self._context_per_slot:
                param = f"input[{index}]" if len(texts) > 1 else "input"
                raise ContextOverflow(len(tokens), self._context_per_slot, param)
        return [Embedding(self._embedder.embed(tokens), len(tokens)) for tokens in tokenized]

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        await self.check_health()
        sampling = request.sampling
        if sampling.max_tokens == 0 and sampling.prompt_logprobs is None:
            # Nothing to generate and nothing to score: a request the service should not have made.
            raise InvalidParameter("max_tokens 0 only scores a prompt: it needs prompt_logprobs", param="max_tokens")
        prompt = list(request.prompt_token_ids) if request.prompt_token_ids else await self.tokenize(request.prompt)
        room = self._context_per_slot - len(prompt)
        if room < 0 or (room == 0 and sampling.max_tokens > 0):
            yield Chunk("", len(prompt), 0, FinishReason.LENGTH)
            return
        constraint = request.sampling.constraint
        grammar = await compile_grammar(self._model.vocab, constraint) if constraint is not None else None
        queue: asyncio.Queue[Chunk | BaseException] = asyncio.Queue()
        sequence = Sequence(
            request,
            prompt,
            queue.put_nowait,
            handoff.for_running_loop(),
            max_new_tokens=min(request.sampling.max_tokens, room),
            grammar=grammar,
        )
        self._sequences[request.request_id] = sequence
        self._loop.submit(sequence)  # the decode loop owns the grammar from here on
        try:
            first = True
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if first and sequence.started_at is not None:
                    item = dataclasses.replace(
                        item,
                        queued_seconds=sequence.started_at - sequence.submitted_at,
                        constraint_compile_seconds=grammar.compile_seconds if grammar is not None else None,
                    )
                first = False
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            # Runs on normal end, client disconnect (aclose) and cancellation alike: the loop frees the
            # sequence's slot and KV cells at its next step.
            self._sequences.pop(request.request_id, None)
            if not sequence.cancelled:
                self._loop.cancel(sequence)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.stop()
        await asyncio.to_thread(self._loop.join)
        await asyncio.to_thread(self._embedder.close)
        llama_cpp.llama_free(self._ctx)
        self._model.close()  # type: ignore[no-untyped-call]
