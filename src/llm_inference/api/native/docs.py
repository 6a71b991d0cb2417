"""OpenAPI descriptions shared by the inference routes: the error responses and the SSE event format."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from llm_inference.api.http.errors import ErrorResponse

ERROR_RESPONSES = {
    400: ResponseSpec(ErrorResponse, description="Malformed JSON, or the prompt does not fit the context"),
    404: ResponseSpec(ErrorResponse, description="The model is not in LLM_ALLOWED_MODELS"),
    413: ResponseSpec(ErrorResponse, description="The body is larger than LLM_MAX_REQUEST_BYTES"),
    422: ResponseSpec(ErrorResponse, description="A field breaks its rule; `param` names it"),
    429: ResponseSpec(ErrorResponse, description="Too many requests in flight; see Retry-After"),
    503: ResponseSpec(ErrorResponse, description="The model is loading, failed, or the service is draining"),
    504: ResponseSpec(ErrorResponse, description="Generation exceeded LLM_REQUEST_TIMEOUT_SECONDS"),
}

# A chat may name a session (`session_id`): one that is unknown here, or answering another turn.
CHAT_ERROR_RESPONSES = {
    **ERROR_RESPONSES,
    404: ResponseSpec(
        ErrorResponse, description="The model is not in LLM_ALLOWED_MODELS, or session_id names no session here"
    ),
    409: ResponseSpec(ErrorResponse, description="The session (session_id) is answering another turn"),
    502: ResponseSpec(ErrorResponse, description="A server-executed tool failed (`tool_dispatch_failed`)"),
    504: ResponseSpec(
        ErrorResponse,
        description="Generation exceeded LLM_REQUEST_TIMEOUT_SECONDS, or a server-executed tool "
        "LLM_TOOL_DISPATCH_TIMEOUT_SECONDS (`tool_dispatch_timeout`)",
    ),
}

STREAM_DESCRIPTION = """Server-Sent Events. Each event is one line `data: <json>` followed by a blank line:

* `{"type": "delta", "text": "..."}` for every piece of generated text;
* `{"type": "done", "model": ..., "finish_reason": "stop"|"length", "usage": {...}, "timings": {...}}` once;
* `{"type": "error", "error": {"type": ..., "message": ...}}` instead of `done` if generation fails midway.

The stream then ends with the terminator `data: [DONE]`. Errors found before generation starts (bad input,
unknown model, overload) are ordinary HTTP error responses with the JSON error body.
"""

STREAM_FLAG_DESCRIPTION = """With `"stream": true` (what Ollama's clients send) the answer is the same
Server-Sent Events as the `/stream` route's, with media type `text/event-stream`; otherwise one JSON object."""
