"""A generation stream as the Responses API's events: `event: <type>` and `data: <event>` per frame, each event
with the next sequence_number, and no `data: [DONE]` (OpenAI ends the stream with its last event).

response.created and response.in_progress come first; then each output item in turn: a message
(output_item.added, content_part.added, output_text.delta per piece of text, output_text.done,
content_part.done, output_item.done) or a function call (output_item.added, function_call_arguments.delta per
piece, function_call_arguments.done, output_item.done); then response.completed, or response.incomplete when
max_output_tokens cut the answer. A failure after the stream started is a response.failed event whose response
carries the error, as OpenAI's are.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from litestar.response import Stream

from llm_inference.api.http.streaming import sse_response
from llm_inference.api.openai.responses_api.bodies import (
    ContentPartAdded,
    ContentPartDone,
    EchoedSettings,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    FunctionCallOutput,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputMessage,
    OutputText,
    OutputTextDelta,
    OutputTextDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseEvent,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
)
from llm_inference.api.openai.responses_api.output import (
    function_call_id,
    message_id,
    response_object,
    status_of,
)
from llm_inference.service import (
    Delta,
    Failed,
    Finished,
    GenerationStream,
    InferenceService,
    Prepared,
    StreamItem,
    ToolCallDelta,
)

_encode = msgspec.json.Encoder().encode
_MARK = "\x00text\x00"  # a delta no text can be mistaken for: its JSON form appears once in the frame
_END = b"}\n\n"


def event_frame(event: ResponseEvent) -> bytes:
    kind = type(event).__struct_config__.tag
    assert isinstance(kind, str)
    return b"event: " + kind.encode() + b"\ndata: " + _encode(event) + b"\n\n"


def delta_frame_template(item_id: str, output_index: int) -> Callable[[str, int], bytes]:
    """A text delta's frame is the same bytes around its text and its sequence number (the event's last field):
    encoded once per message item with a mark as the text, each delta then costs one string encoding and a join
    (the hot path of every streamed token)."""
    sample = OutputTextDelta(
        item_id=item_id, output_index=output_index, content_index=0, delta=_MARK, logprobs=[], sequence_number=0
    )
    head, tail = event_frame(sample).split(_encode(_MARK))
    assert tail.endswith(b":0" + _END)
    tail = tail[: -len(b"0" + _END)]
    return lambda text, sequence_number: b"".join((head, _encode(text), tail, b"%d" % sequence_number, _END))


class ResponseEvents:
    """Turns each stream item into its events. `output` holds the items so far, the open one (the last) as it
    was added; `pieces` the open item's text or arguments so far."""

    def __init__(self, prepared: Prepared, settings: EchoedSettings) -> None:
        self.prepared, self.settings = prepared, settings
        self.created_at = int(time.time())
        self.sequence_number = -1
        self.started = False
        self.output: list[OutputItem] = []
        self.open: OutputItem | None = None
        self.pieces: list[str] = []
        self._delta_frame: Callable[[str, int], bytes] = lambda text, number: b""

    def _next(self) -> int:
        self.sequence_number += 1
        return self.sequence_number

    def __call__(self, item: StreamItem) -> bytes:
        frames = self._start()
        if isinstance(item, Delta):
            return frames + self._text(item.text)
        if isinstance(item, ToolCallDelta):
            return frames + self._call(item)
        if isinstance(item, Finished):
            return frames + self._finish(item)
        return frames + self._fail(item)

    def failure_frame(self) -> bytes:
        """The frames for a stream that raised (written by the transport): a response.failed event."""
        return self._start() + self._fail(Failed("internal_error", "internal server error"))

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        response = response_object(self.prepared, self.settings, self.created_at, "in_progress", [])
        return event_frame(ResponseCreated(response=response, sequence_number=self._next())) + event_frame(
            ResponseInProgress(response=response, sequence_number=self._next())
        )

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        frames = b"" if isinstance(self.open, OutputMessage) else self._close("completed") + self._open_message()
        self.pieces.append(text)
        return frames + self._delta_frame(text, self._next())

    def _open_message(self) -> bytes:
        index = len(self.output)
        item = OutputMessage(id=message_id(self.prepared, index), status="in_progress", content=[])
        self.open, self.pieces = item, []
        self.output.append(item)
        self._delta_frame = delta_frame_template(item.id, index)
        part = OutputText(text="")
        return event_frame(OutputItemAdded(output_index=index, item=item, sequence_number=self._next())) + event_frame(
            ContentPartAdded(
                item_id=item.id, output_index=index, content_index=0, part=part, sequence_number=self._next()
            )
        )

    def _call(self, piece: ToolCallDelta) -> bytes:
        frames = b""
        if piece.name is not None:  # the call's first piece: its id and name
            frames = self._close("completed")
            index = len(self.output)
            item = FunctionCallOutput(
                id=function_call_id(self.prepared, piece.index),
                call_id=piece.id or "",
                name=piece.name,
                arguments="",
                status="in_progress",
            )
            self.open, self.pieces = item, []
            self.output.append(item)
            frames += event_frame(OutputItemAdded(output_index=index, item=item, sequence_number=self._next()))
        if not piece.arguments or not isinstance(self.open, FunctionCallOutput):
            return frames
        self.pieces.append(piece.arguments)
        return frames + event_frame(
            FunctionCallArgumentsDelta(
                item_id=self.open.id,
                output_index=len(self.output) - 1,
                delta=piece.arguments,
                sequence_number=self._next(),
            )
        )

    def _finished_item(self, status: str) -> OutputItem | None:
        """The open item with its text or arguments so far, and `status`; None if no item is open."""
        if isinstance(self.open, OutputMessage):
            content = [OutputText(text="".join(self.pieces))]
            return msgspec.structs.replace(self.open, status=status, content=content)
        if isinstance(self.open, FunctionCallOutput):
            return msgspec.structs.replace(self.open, status=status, arguments="".join(self.pieces))
        return None

    def _close(self, status: str) -> bytes:
        item = self._finished_item(status)
        if item is None:
            return b""
        index = len(self.output) - 1
        self.output[index], self.open, self.pieces = item, None, []
        if isinstance(item, OutputMessage):
            part = item.content[0]
            frames = event_frame(
                OutputTextDone(
                    item_id=item.id,
                    output_index=index,
                    content_index=0,
                    text=part.text,
                    logprobs=[],
                    sequence_number=self._next(),
                )
            ) + event_frame(
                ContentPartDone(
                    item_id=item.id, output_index=index, content_index=0, part=part, sequence_number=self._next()
                )
            )
        else:
            frames = event_frame(
                FunctionCallArgumentsDone(
                    item_id=item.id,
                    output_index=index,
                    name=item.name,
                    arguments=item.arguments,
                    sequence_number=self._next(),
                )
            )
        return frames + event_frame(OutputItemDone(output_index=index, item=item, sequence_number=self._next()))

    def _finish(self, item: Finished) -> bytes:
        frames = self._open_message() if not self.output else b""  # an empty answer is still a message
        status = status_of(item.finish_reason)
        frames += self._close(status)
        response = response_object(self.prepared, self.settings, self.created_at, status, self.output, item.usage)
        event = ResponseIncomplete if status == "incomplete" else ResponseCompleted
        return frames + event_frame(event(response=response, sequence_number=self._next()))

    def _fail(self, item: Failed) -> bytes:
        last = self._finished_item("incomplete")
        if last is not None:
            self.output[-1], self.open = last, None
        error = ResponseError(code=item.type, message=item.message)
        response = response_object(self.prepared, self.settings, self.created_at, "failed", self.output, error=error)
        return event_frame(ResponseFailed(response=response, sequence_number=self._next()))


def event_stream(service: InferenceService, stream: GenerationStream, settings: EchoedSettings) -> Stream:
    events = ResponseEvents(stream.prepared, settings)
    return sse_response(stream, events, events.failure_frame, service.settings.sse_ping_seconds, done_frame=b"")
