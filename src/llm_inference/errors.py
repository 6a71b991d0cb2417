"""Domain errors raised by the service's layers; api/http/errors.py maps each to a status code and JSON body."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: `type` is the machine-readable error type, `param` the offending field if any."""

    status_code = 500
    type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidParameter(ServiceError):
    status_code = 422
    type = "invalid_parameter"


class EmbeddingsUnsupported(ServiceError):
    """The model's engine cannot produce embeddings (e.g. a generation model on vLLM)."""

    status_code = 400
    type = "embeddings_not_supported"


class UnsupportedParameter(InvalidParameter):
    """A field the client may send (OpenAI defines it) whose value this service cannot honour: refused rather
    than ignored, because ignoring it would silently change the result."""

    status_code = 400
    type = "unsupported_parameter"


class ModelNotFound(ServiceError):
    status_code = 404
    type = "model_not_found"


class ModelBusy(ServiceError):
    """An operator asked to unload a model that requests are using."""

    status_code = 409
    type = "model_busy"


class ContextOverflow(ServiceError):
    status_code = 400
    type = "context_length_exceeded"

    def __init__(
        self, prompt_tokens: int, context_length: int, param: str = "prompt", *, message: str | None = None
    ) -> None:
        super().__init__(
            message or f"{param} is {prompt_tokens} tokens but the model's context is {context_length} tokens",
            param=param,
        )
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class SessionNotFound(ServiceError):
    """No session has this id: never created, deleted, expired (LLM_SESSION_TTL_SECONDS) or evicted
    (LLM_MAX_SESSIONS), or kept by another replica."""

    status_code = 404
    type = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session_id {session_id[:64]!r} names no session on this replica: it was never created, was deleted, "
            "expired or was evicted",
            param="session_id",
        )


class ResponseNotStored(ServiceError):
    """The Responses API's stored-response routes: this service accepts `store` but stores nothing, so there is
    never a response to retrieve, list the input of, delete or cancel."""

    status_code = 404
    type = "response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(
            f"response {response_id[:64]!r} is not stored: this server does not store responses (`store` is "
            "accepted and ignored), so none can be retrieved, deleted or cancelled; keep the response you were sent",
            param="response_id",
        )


class SessionBusy(ServiceError):
    """A session answers one turn at a time: a second turn sent meanwhile would be written against a history
    that lacks the first one's answer."""

    status_code = 409
    type = "session_busy"

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session_id {session_id!r} is answering another turn; send the next one after it ends",
            param="session_id",
        )


class RetryLater(ServiceError):
    """A refusal the client should retry: answered with a Retry-After header."""

    default_retry_after_seconds = 1

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds or self.default_retry_after_seconds


class Overloaded(RetryLater):
    status_code = 429
    type = "overloaded"


class NotReady(RetryLater):
    """The model is loading, failed to load, or the service is draining."""

    status_code = 503
    type = "not_ready"
    default_retry_after_seconds = 5


class StateUnavailable(RetryLater):
    """The shared store (LLM_STATE_URL) did not answer in time: what lives there (sessions; rate limits with
    LLM_RATE_LIMIT_ON_STATE_FAILURE=closed) cannot be read or written until it does."""

    status_code = 503
    type = "state_unavailable"


class EngineDead(ServiceError):
    status_code = 503
    type = "engine_unavailable"


class EngineFailure(ServiceError):
    """One request failed inside the engine; the engine itself still serves."""

    status_code = 500
    type = "engine_error"


class RequestTimeout(ServiceError):
    status_code = 504
    type = "timeout"


class ToolDispatchFailed(ServiceError):
    """A server-executed tool (LLM_TOOL_DISPATCH_URL) could not give its result: the request ends without one.
    `outcome` is how it failed, as llm_tool_dispatch_total counts it."""

    status_code = 502
    type = "tool_dispatch_failed"

    def __init__(self, message: str, *, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class ToolDispatchTimeout(ToolDispatchFailed):
    status_code = 504
    type = "tool_dispatch_timeout"
