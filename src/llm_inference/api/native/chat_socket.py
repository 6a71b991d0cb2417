"""GET /api/chat/ws: chat over a WebSocket, for clients that keep one connection for a whole conversation.

Each client message is a chat request (the body of POST /api/chat) or `{"type": "cancel"}`. Requests are
answered one at a time, in the order sent, each with the /api SSE events as JSON messages: `delta`s, then
one `done` or `error`; so every request gets exactly one final event and a client can match them by order.
A cancel ends the running generation (its final event is an `error` of type `cancelled`); a closed socket
ends it too. The reading side runs apart from the generation, so both are seen while tokens flow.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import msgspec.inspect
from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from llm_inference.api.http import invalid_fields
from llm_inference.api.http.auth import BEARER_SUBPROTOCOL
from llm_inference.api.http.errors import ErrorDetail, invalid_request
from llm_inference.api.http.json_body import EMPTY_BODY, invalid_json_reason
from llm_inference.api.native.schemas import ChatRequest, ErrorEvent, StreamEvent
from llm_inference.api.native.translate import chat_input, stream_event
from llm_inference.errors import ServiceError
from llm_inference.service import InferenceService, open_chat_stream

log = logging.getLogger(__name__)

CANCEL = {"type": "cancel"}
# Requests a client may send ahead of the one running; past that it is not waiting for answers, and the
# socket is closed rather than buffering without bound (reading must go on, or a cancel would go unseen).
MAX_PENDING = 8
POLICY_VIOLATION = 1008
CHAT_REQUEST = msgspec.inspect.type_info(ChatRequest)
_encoder = msgspec.json.Encoder()


class _ClientGone(Exception):
    pass


def parse_message(raw: str | bytes, max_bytes: int) -> ChatRequest | ErrorDetail | None:
    """A chat request, the error the same body would get over HTTP, or None for a cancel."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        return ErrorDetail("request_too_large", f"the body is larger than LLM_MAX_REQUEST_BYTES={max_bytes} bytes")
    if not data:
        return ErrorDetail("invalid_json", EMPTY_BODY)
    try:
        value: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        return ErrorDetail("invalid_json", invalid_json_reason(data, exc))
    if value == CANCEL:
        return None
    if found := invalid_fields.failures(ChatRequest, CHAT_REQUEST, value):  # as JsonBodyRequest checks HTTP
        return invalid_request(CHAT_REQUEST, [(detail, "") for detail in found])
    try:
        # As Litestar converts an HTTP body: not strict, so the same values pass and fail.
        return msgspec.convert(value, ChatRequest, strict=False, str_keys=True)
    except msgspec.ValidationError as exc:
        return invalid_request(CHAT_REQUEST, [(str(exc), "")])


class ChatSession:
    def __init__(self, socket: WebSocket[Any, Any, Any], service: InferenceService) -> None:
        self._socket, self._service = socket, service
        self._pending: asyncio.Queue[ChatRequest | ErrorDetail] = asyncio.Queue()
        self._running: asyncio.Task[None] | None = None
        self._cancel_asked = False

    async def run(self) -> None:
        answering = asyncio.create_task(self._answer_in_order(), name="chat-socket-answers")
        try:
            await self._read()
        finally:
            # The client left (or broke the rules): stop the generation, which frees its engine sequence and
            # admission slot.
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)

    async def _read(self) -> None:
        max_bytes = self._service.settings.max_request_bytes
        while True:
            event = await self._socket.receive()
            if event["type"] == "websocket.disconnect":
                return
            raw: str | bytes = event.get("text") or event.get("bytes") or b""  # type: ignore[assignment]
            message = parse_message(raw, max_bytes)
            if message is None:
                self._cancel()
            elif self._pending.qsize() >= MAX_PENDING:
                await self._socket.close(POLICY_VIOLATION, f"more than {MAX_PENDING} requests waiting")
                return
            else:
                self._pending.put_nowait(message)

    def _cancel(self) -> None:
        if self._running is not None and not self._running.done():
            self._cancel_asked = True
            self._running.cancel()

    async def _answer_in_order(self) -> None:
        try:
            while True:
                message = await self._pending.get()
                if isinstance(message, ErrorDetail):
                    await self._send(ErrorEvent(message))
                    continue
                self._cancel_asked = False
                self._running = asyncio.create_task(self._generate(message))
                try:
                    await self._running
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if not self._cancel_asked or (current is not None and current.cancelling()):
                        raise  # this task itself is being stopped: the socket closed
                    cancelled = ErrorDetail(
                        "cancelled", 'the generation was cancelled: the client sent {"type": "cancel"}'
                    )
                    await self._send(ErrorEvent(cancelled))
        except _ClientGone:
            pass

    async def _generate(self, request: ChatRequest) -> None:
        service = self._service
        try:
            stream = await open_chat_stream(service, chat_input(request))
        except ServiceError as exc:
            await self._send(ErrorEvent(ErrorDetail(exc.type, exc.message, exc.param)))
            return
        try:
            async for item in stream:
                await self._send(stream_event(stream, item))
        except _ClientGone:
            raise
        except Exception:
            log.exception("chat socket stream failed")
            await self._send(ErrorEvent(ErrorDetail("internal_error", "internal server error")))
        finally:
            await stream.aclose()

    async def _send(self, event: StreamEvent) -> None:
        try:
            await self._socket.send_data(_encoder.encode(event).decode(), mode="text")
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:  # the peer went away mid-send
            raise _ClientGone from exc


@websocket("/api/chat/ws")
async def chat_socket(socket: WebSocket[Any, Any, Any], state: State) -> None:
    # A browser that offered the `bearer` subprotocol (to carry its key) needs it chosen, or it drops the socket.
    offered = socket.scope.get("subprotocols") or []
    await socket.accept(subprotocols=BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offered else None)
    await ChatSession(socket, state.service).run()
