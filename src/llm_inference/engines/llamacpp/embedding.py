"""Text embeddings on llama.cpp: a context of its own over the loaded model, in embedding mode with mean pooling.

Separate from the decode loop's context, so embedding never waits for or disturbs generation's KV cache; it is
created on the first request (most deployments never embed) and used by one thread at a time.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import llama_cpp
from llama_cpp._internals import LlamaModel


class Embedder:
    def __init__(self, model: LlamaModel, context_length: int, threads: int) -> None:
        self._model = model
        self._context_length = context_length
        self._threads = threads
        self._lock = threading.Lock()
        self._ctx: Any = None
        self._batch: Any = None
        self.dimensions = llama_cpp.llama_model_n_embd(model.model)

    def _open(self) -> None:
        params = llama_cpp.llama_context_default_params()
        params.embeddings = True
        # Mean over the text's tokens: the model has no pooling layer of its own (a causal LM), and the mean
        # is what llama-server and sentence-transformers use for such models.
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        params.n_ctx = params.n_batch = params.n_ubatch = self._context_length
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = self._threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self._model.model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create an embedding context of {self._context_length} tokens")
        self._ctx, self._batch = ctx, llama_cpp.llama_batch_init(self._context_length, 0, 1)

    def embed(self, tokens: list[int]) -> list[float]:
        """The L2-normalized mean embedding of one tokenized text (blocking: call from a thread)."""
        with self._lock:
            if self._ctx is None:
                self._open()
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
            batch = self._batch
            for position, token in enumerate(tokens):
                batch.token[position] = token
                batch.pos[position] = position
                batch.n_seq_id[position] = 1
                batch.seq_id[position][0] = 0
                batch.logits[position] = True
            batch.n_tokens = len(tokens)
            status = llama_cpp.llama_decode(self._ctx, batch)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status} while embedding")
            pooled = llama_cpp.llama_get_embeddings_seq(self._ctx, 0)
            vector = [float(pooled[i]) for i in range(self.dimensions)]
        norm = math.sqrt(sum(value * value for value in vector)) or 1.0
        return [value / norm for value in vector]

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                llama_cpp.llama_batch_free(self._batch)
                llama_cpp.llama_free(self._ctx)
                self._ctx = None
