"""The HTTP-free core every surface (/api, /v1) shares: admission, prepare -> engine request, run or stream,
timeouts, cancellation, context pruning and sessions. It knows no HTTP and no wire format."""

from llm_inference.service.admission import Admission, Slot
from llm_inference.service.batch import complete_batch
from llm_inference.service.chat import ChatInput, complete_chat, open_chat_stream, start_session
from llm_inference.service.core import InferenceService
from llm_inference.service.generation import (
    Delta,
    Failed,
    Finished,
    GenerationStream,
    Outcome,
    StreamItem,
    Timings,
    ToolCallDelta,
    ToolResult,
    ToolRound,
    Usage,
    complete,
    open_stream,
)
from llm_inference.service.prepare import Prepared, SamplingInput, Truncation, prepare, resolve_sampling
from llm_inference.service.sessions import LocalSessions, Session, Sessions
from llm_inference.service.tokens import Detokenized, Tokenized, detokenize, tokenize

__all__ = [
    "Admission",
    "ChatInput",
    "Delta",
    "Detokenized",
    "Failed",
    "Finished",
    "GenerationStream",
    "InferenceService",
    "LocalSessions",
    "Outcome",
    "Prepared",
    "SamplingInput",
    "Session",
    "Sessions",
    "Slot",
    "StreamItem",
    "Timings",
    "Tokenized",
    "ToolCallDelta",
    "ToolResult",
    "ToolRound",
    "Truncation",
    "Usage",
    "complete",
    "complete_batch",
    "complete_chat",
    "detokenize",
    "open_chat_stream",
    "open_stream",
    "prepare",
    "resolve_sampling",
    "start_session",
    "tokenize",
]
