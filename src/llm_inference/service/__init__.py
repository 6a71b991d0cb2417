"""The HTTP-free core every surface (/api, /v1) shares: admission, prepare -> engine request, run or stream,
timeouts and cancellation. It knows no HTTP and no wire format."""

from llm_inference.service.admission import Admission, Slot
from llm_inference.service.batch import complete_batch
from llm_inference.service.core import InferenceService
from llm_inference.service.generation import (
    Delta,
    Failed,
    Finished,
    GenerationStream,
    Outcome,
    StreamItem,
    Timings,
    Usage,
    complete,
    open_stream,
)
from llm_inference.service.prepare import Prepared, SamplingInput, prepare, resolve_sampling
from llm_inference.service.tokens import Detokenized, Tokenized, detokenize, tokenize

__all__ = [
    "Admission",
    "Delta",
    "Detokenized",
    "Failed",
    "Finished",
    "GenerationStream",
    "InferenceService",
    "Outcome",
    "Prepared",
    "SamplingInput",
    "Slot",
    "StreamItem",
    "Timings",
    "Tokenized",
    "Usage",
    "complete",
    "complete_batch",
    "detokenize",
    "open_stream",
    "prepare",
    "resolve_sampling",
    "tokenize",
]
