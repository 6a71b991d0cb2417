"""The small engine protocol every inference backend implements, and the types that cross it."""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llm_inference.engines.constraints import OutputConstraint


class FinishReason(enum.StrEnum):
    STOP = "stop"  # EOS token or a stop sequence
    LENGTH = "length"  # max_tokens reached or the context is full
    CANCELLED = "cancelled"  # aborted (client gone, timeout, shutdown)


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Fully resolved sampling parameters: every default and limit has been applied."""

    max_tokens: int  # 0 only with prompt_logprobs: the prompt is scored and nothing generated
    temperature: float
    top_p: float
    top_k: int = 0  # 0 disables top-k
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # benchmarks only: generate exactly max_tokens
    # Structured outputs: the output must be JSON (of this schema); each engine enforces it its own way.
    constraint: OutputConstraint | None = None
    # Write the tool-call marker tokens (<tool_call>, [TOOL_CALLS], <|python_tag|>: control tokens in some
    # vocabularies) into the text, where the tool-call parser looks for them; other control tokens stay out.
    tool_markers: bool = False
    # Log probabilities (computed only for requests that ask): None computes none; k >= 0 gives each sampled
    # token's log probability and its k most likely alternatives (Chunk.logprobs). `prompt_logprobs` does the
    # same for every prompt token (Chunk.prompt_logprobs; the prompt's KV cells are then computed, not reused).
    # Values are the log-softmax of the model's raw logits, before temperature, penalties and bias (vLLM's
    # default), so they do not depend on how the token was drawn.
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    # Penalties over the tokens generated so far (OpenAI's presence/frequency, -2..2) and over prompt and
    # generated tokens (repetition, > 0, vLLM's and llama.cpp's multiplicative one; 1 is off).
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    min_p: float = 0.0  # 0 is off
    # (token id, bias added to its logit): -100 bans a token, +100 all but forces it. Ids checked < vocab size.
    logit_bias: tuple[tuple[int, float], ...] = ()


@dataclass(slots=True)  # not frozen, as Chunk: one per token when asked
class TokenLogprob:
    """One token's log probability and, when asked, the most likely tokens at its position (most likely first).

    `text` is the token's own bytes (a piece of a UTF-8 character for byte tokens). `logprob` is None only for
    a prompt's first token, which nothing precedes."""

    token: int
    text: bytes
    logprob: float | None
    top: tuple[tuple[int, bytes, float], ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    prompt: str  # already rendered (chat template applied for chat requests)
    sampling: SamplingParams
    prompt_token_ids: tuple[int, ...] | None = None  # pre-tokenized prompt, when the caller has it


# Not frozen: a frozen dataclass's __init__ sets every field through object.__setattr__ (1.7 us for a Chunk,
# against 0.4 us), and one is built for every streamed token. Treat it as immutable all the same.
@dataclass(slots=True)
class Chunk:
    """One step of a generation: a text delta and, on the last chunk, the finish reason."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason | None = None
    # On a request's first chunk, from engines that know it: how long the request waited before the engine
    # started on it (the queue-time metric).
    queued_seconds: float | None = None
    # On a constrained request's first chunk, from engines that compile the constraint themselves: how long
    # turning it into their mechanism (a grammar) took.
    constraint_compile_seconds: float | None = None
    # The tokens of this chunk's text with their log probabilities, when the request asked (SamplingParams.logprobs).
    logprobs: tuple[TokenLogprob, ...] = ()
    # On the first chunk of a request with SamplingParams.prompt_logprobs: one per prompt token, in order.
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True, slots=True)
class Embedding:
    vector: list[float]  # L2-normalized
    tokens: int  # the text's length in tokens


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model made: `arguments` is its JSON text, as OpenAI's API carries it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system | user | assistant | tool
    content: str
    # An assistant turn's calls; a tool message's answer to one (`tool_call_id`, the function's `name`).
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class EngineInfo:
    backend: str  # "llamacpp" | "vllm"
    model_format: str  # "gguf" | "safetensors" ...
    context_length: int
    quantization: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # The tool-call format the model's chat template writes tools in ("hermes", "llama3_json", "mistral"), or
    # None when it takes no tools (service/tools then describes them in a system message of its own).
    tool_format: str | None = None


@dataclass(frozen=True, slots=True)
class EngineStats:
    running: int  # sequences being decoded
    waiting: int  # admitted requests not yet decoding
    kv_cache_usage: float | None = None  # 0..1 of the KV cache held by running sequences, where the engine knows
    # Since start, where the engine knows: prompt tokens looked up in its prefix cache, and those whose KV cells
    # it found there (so did not compute), as vLLM counts prefix_cache_queries and prefix_cache_hits.
    prefix_cache_queries: int | None = None
    prefix_cache_hits: int | None = None


@runtime_checkable
class Engine(Protocol):
    """One loaded model. Implementations never block the event loop."""

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Yield chunks until one carries a finish_reason. Closing the iterator (or cancelling its task) aborts
        the request: the engine frees its resources within one decode step."""
        ...

    async def check_health(self) -> None:
        """Raise EngineDead if the engine can no longer serve."""
        ...

    async def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """The prompt's token ids; `add_special` adds what the model puts around a text (BOS for most)."""
        ...

    async def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of token ids, control tokens written out. Callers check the ids against vocab_size()."""
        ...

    def vocab_size(self) -> int:
        """Valid token ids are 0 .. vocab_size() - 1."""
        ...

    async def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """The prompt: messages (and `tools`, OpenAI's tool definitions, when the template takes them)
        through the model's chat template."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[Embedding]:
        """One normalized vector per text. Raises EmbeddingsUnsupported when the model cannot embed here,
        ContextOverflow (param `input[i]`) for a text longer than the context."""
        ...

    def info(self) -> EngineInfo: ...

    def stats(self) -> EngineStats: ...

    @property
    def decode_steps(self) -> int:
        """Decode steps run since the engine started: the progress the stall watch (engines/watchdog.py) reads."""
        ...

    async def aclose(self) -> None: ...
