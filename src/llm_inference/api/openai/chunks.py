"""A generation stream as OpenAI's chunks: one `data: <chunk>` frame per piece of text, a last chunk with the
finish_reason, with include_usage one more chunk with no choices and the usage, then `data: [DONE]`.

A failure after the stream started is written as `data: {"error": {...}}`: OpenAI's SDKs raise an APIError
when they read a frame with an `error` key, so the client learns the stream did not end normally.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from litestar.response import Stream
from msgspec import UNSET, UnsetType

from llm_inference.api.http.streaming import data_frame, sse_response
from llm_inference.api.openai.errors import openai_error
from llm_inference.api.openai.logprobs import ChatLogprobs, chat_logprobs, text_logprobs
from llm_inference.api.openai.responses import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChunkDelta,
    ChunkFunction,
    ChunkToolCall,
    Completion,
    TextChoice,
    Usage,
)
from llm_inference.api.shared.schemas import ToolRound
from llm_inference.api.shared.tool_fields import tool_rounds
from llm_inference.engines.base import TokenLogprob
from llm_inference.service import (
    Delta,
    Failed,
    Finished,
    GenerationStream,
    InferenceService,
    StreamItem,
    ToolCallDelta,
)
from llm_inference.service import Usage as ServiceUsage
from llm_inference.service.choices import ChoiceStreams
from llm_inference.service.prepare import Prepared

INTERNAL_ERROR_FRAME = data_frame(openai_error(500, "internal_error", "internal server error", None)[1])
_encode_text = msgspec.json.Encoder().encode
_MARK = "\x00text\x00"  # a content no text can be mistaken for: its JSON form appears once in the frame


def text_frame_template(frame: Callable[[str], bytes]) -> Callable[[str], bytes]:
    """Per stream, a delta frame is the same bytes around its text: encode the frame once with a mark as the
    text, then each delta costs one string encoding and a join (the hot path of every streamed token)."""
    head, tail = frame(_MARK).split(_encode_text(_MARK))
    return lambda text: b"".join((head, _encode_text(text), tail))


def usage(value: ServiceUsage) -> Usage:
    return Usage(value.prompt_tokens, value.completion_tokens, value.total_tokens)


def completion_id(prefix: str, prepared: Prepared) -> str:
    # The engine request's id, so a response can be matched with the service's own logs and traces.
    return f"{prefix}-{prepared.request.request_id}"


def _error_frame(item: Failed) -> bytes:
    return data_frame(openai_error(500, item.type, item.message, item.param)[1])


class _Encoder:
    """Turns each stream item into its frames; the chunks of one stream share id, created and model.

    `index`: the choice the stream is (with n > 1, one encoder per choice); `usage_frame`: whether its end is
    followed by the usage chunk (with several choices, one usage chunk follows them all)."""

    prefix = ""

    def __init__(
        self, prepared: Prepared, include_usage: bool, index: int = 0, usage_frame: bool | None = None
    ) -> None:
        self.id, self.model = completion_id(self.prefix, prepared), prepared.model
        self.created = int(time.time())
        self.index = index
        self.usage_frame = include_usage if usage_frame is None else usage_frame
        # With include_usage every chunk carries "usage": null until the last one; otherwise none carries it.
        self.no_usage: Usage | None | UnsetType = None if include_usage else UNSET

    def __call__(self, item: StreamItem) -> bytes:
        if isinstance(item, Delta):
            return self.delta_logprobs(item) if item.logprobs else self.delta(item.text)
        if isinstance(item, ToolCallDelta):
            return self.tool_call(item)
        if isinstance(item, Finished):
            frames = self.finish(item)
            if self.usage_frame:
                frames += self.usage(usage(item.usage))
            return frames
        return _error_frame(item)

    def delta(self, text: str) -> bytes:
        raise NotImplementedError

    def delta_logprobs(self, item: Delta) -> bytes:
        raise NotImplementedError

    def tool_call(self, item: ToolCallDelta) -> bytes:
        raise NotImplementedError  # only chats offer tools

    def finish(self, item: Finished) -> bytes:
        raise NotImplementedError

    def usage(self, value: Usage) -> bytes:
        raise NotImplementedError


class ChatChunks(_Encoder):
    prefix = "chatcmpl"
    started = False
    truncated_messages: int | UnsetType = UNSET  # said on the finishing chunk

    def _chunk(
        self,
        delta: ChunkDelta,
        reason: str | None = None,
        truncated_messages: int | UnsetType = UNSET,
        rounds: list[ToolRound] | UnsetType = UNSET,
        logprobs: ChatLogprobs | None = None,
    ) -> bytes:
        choice = ChatChunkChoice(delta=delta, finish_reason=reason, index=self.index, logprobs=logprobs)
        return data_frame(
            ChatCompletionChunk(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=[choice],
                usage=self.no_usage,
                truncated_messages=truncated_messages,
                tool_rounds=rounds,
            )
        )

    def _start(self) -> bytes:
        # OpenAI's first chunk names the role with empty content; the text follows in later chunks.
        if self.started:
            return b""
        self.started = True
        return self._chunk(ChunkDelta(role="assistant", content=""))

    def __init__(
        self, prepared: Prepared, include_usage: bool, index: int = 0, usage_frame: bool | None = None
    ) -> None:
        super().__init__(prepared, include_usage, index, usage_frame)
        self._text_frame = text_frame_template(lambda text: self._chunk(ChunkDelta(content=text)))

    def delta(self, text: str) -> bytes:
        return self._start() + self._text_frame(text) if not self.started else self._text_frame(text)

    def delta_logprobs(self, item: Delta) -> bytes:
        return self._start() + self._chunk(ChunkDelta(content=item.text), logprobs=chat_logprobs(item.logprobs))

    def tool_call(self, item: ToolCallDelta) -> bytes:
        if item.name is not None:  # OpenAI's first piece of a call: its id, type and name, arguments ""
            piece = ChunkToolCall(
                index=item.index, id=item.id or UNSET, type="function", function=ChunkFunction(item.name, "")
            )
        else:
            piece = ChunkToolCall(index=item.index, function=ChunkFunction(arguments=item.arguments))
        return self._start() + self._chunk(ChunkDelta(tool_calls=[piece]))

    def finish(self, item: Finished) -> bytes:
        rounds = tool_rounds(item.tool_rounds)
        return self._start() + self._chunk(ChunkDelta(), item.finish_reason, self.truncated_messages, rounds)

    def usage(self, value: Usage) -> bytes:
        return data_frame(
            ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[], usage=value)
        )


class TextChunks(_Encoder):
    prefix = "cmpl"
    sent_characters = 0  # of the choice's text, for the next chunk's text_offset (counted with logprobs only)

    def _chunk(self, choices: list[TextChoice], usage: Usage | None | UnsetType) -> bytes:
        return data_frame(Completion(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage))

    def __init__(
        self, prepared: Prepared, include_usage: bool, index: int = 0, usage_frame: bool | None = None
    ) -> None:
        super().__init__(prepared, include_usage, index, usage_frame)
        self._text_frame = text_frame_template(
            lambda text: self._chunk([TextChoice(text=text, finish_reason=None, index=index)], self.no_usage)
        )

    def delta(self, text: str) -> bytes:
        return self._text_frame(text)

    def delta_logprobs(self, item: Delta) -> bytes:
        logprobs = text_logprobs(item.logprobs, self.sent_characters)
        self.sent_characters += len(item.text)
        return self._chunk([TextChoice(item.text, None, self.index, logprobs)], self.no_usage)

    def echo(self, prompt: str, prompt_logprobs: tuple[TokenLogprob, ...] | None) -> bytes:
        """The prompt, as the choice's first text (`echo`), with its tokens' log probabilities if asked."""
        self.sent_characters = len(prompt)
        logprobs = text_logprobs(prompt_logprobs) if prompt_logprobs is not None else None
        return self._chunk([TextChoice(prompt, None, self.index, logprobs)], self.no_usage)

    def finish(self, item: Finished) -> bytes:
        return self._chunk([TextChoice(text="", finish_reason=item.finish_reason, index=self.index)], self.no_usage)

    def usage(self, value: Usage) -> bytes:
        return self._chunk([], value)


class _Echoing:
    """A completion stream with `echo`: the prompt's chunk goes before the choice's first frame."""

    def __init__(self, encode: Callable[[StreamItem], bytes], first: bytes) -> None:
        self.encode, self.first = encode, first

    def __call__(self, item: StreamItem) -> bytes:
        first, self.first = self.first, b""
        return first + self.encode(item)


def _echo(encoder: TextChunks, stream: GenerationStream, logprobs: bool) -> _Echoing:
    prompt_logprobs = stream.prompt_logprobs if logprobs else None
    return _Echoing(encoder, encoder.echo(stream.prepared.request.prompt, prompt_logprobs))


def chunk_stream(
    service: InferenceService,
    stream: GenerationStream,
    chat: bool,
    include_usage: bool,
    truncated_messages: int | UnsetType = UNSET,
    echo: bool = False,
    echo_logprobs: bool = False,
) -> Stream:
    """`echo`/`echo_logprobs` (completions): the prompt first, and its tokens' log probabilities."""
    encoder = (ChatChunks if chat else TextChunks)(stream.prepared, include_usage)
    if isinstance(encoder, ChatChunks):
        encoder.truncated_messages = truncated_messages
    encode: Callable[[StreamItem], bytes] = encoder
    if echo and isinstance(encoder, TextChunks):
        encode = _echo(encoder, stream, echo_logprobs)
    return sse_response(stream, encode, INTERNAL_ERROR_FRAME, service.settings.sse_ping_seconds)


class _Choices:
    """Frames of several choices' streams (n > 1, several prompts): each choice's items through its own
    encoder (its index); one usage chunk, the sum, after the last choice has finished."""

    def __init__(
        self, encoders: list[Callable[[StreamItem], bytes]], last: _Encoder, include_usage: bool, prompt_tokens: int
    ) -> None:
        self.encoders, self.last, self.include_usage = encoders, last, include_usage
        self.prompt_tokens, self.completion_tokens = prompt_tokens, 0
        self.unfinished = len(encoders)

    def __call__(self, batch: list[tuple[int, StreamItem]]) -> bytes:
        """A batch's frames (ChoiceStreams: what had arrived, one delta per choice), written together."""
        frames = b""
        for index, item in batch:
            frames += self.encoders[index](item)
            if isinstance(item, Finished | Failed):
                self.unfinished -= 1
                if isinstance(item, Finished):
                    self.completion_tokens += item.usage.completion_tokens
                if self.include_usage and not self.unfinished:
                    frames += self.last.usage(
                        Usage(self.prompt_tokens, self.completion_tokens, self.prompt_tokens + self.completion_tokens)
                    )
        return frames


def choices_stream(
    service: InferenceService,
    streams: ChoiceStreams,
    chat: bool,
    include_usage: bool,
    prompt_tokens: int,
    truncated_messages: int | UnsetType = UNSET,
    echo: bool = False,
    echo_logprobs: bool = False,
) -> Stream:
    """Several choices' chunks in one response, each chunk naming its choice's index. `prompt_tokens`: the
    usage's, each distinct prompt counted once."""
    kind = ChatChunks if chat else TextChunks
    first = streams.streams[0].prepared
    encoders: list[Callable[[StreamItem], bytes]] = []
    for index, stream in enumerate(streams.streams):
        encoder = kind(first, include_usage, index, usage_frame=False)  # one id for the whole response
        if isinstance(encoder, ChatChunks):
            encoder.truncated_messages = truncated_messages
        encoders.append(_echo(encoder, stream, echo_logprobs) if echo and isinstance(encoder, TextChunks) else encoder)
    encode = _Choices(encoders, kind(first, include_usage), include_usage, prompt_tokens)
    return sse_response(streams, encode, INTERNAL_ERROR_FRAME, service.settings.sse_ping_seconds)
