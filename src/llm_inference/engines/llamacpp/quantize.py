"""In-situ quantization on llama.cpp: quantize a GGUF once with llama.cpp's own API, keep the result in a cache
keyed by the source file's content hash and the type, and serve the cached file on every later load."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel

from llm_inference.engines.config import LLAMACPP_ISQ_TYPES, isq_type_problem

log = logging.getLogger(__name__)

# GGUF general.file_type (llama.cpp's LLAMA_FTYPE_*) as the names operators know: Q4_1, Q4_K_M, F16, ...
FILE_TYPES = {
    int(getattr(llama_cpp, name)): name.removeprefix("LLAMA_FTYPE_MOSTLY_")
    for name in dir(llama_cpp)
    if name.startswith("LLAMA_FTYPE_MOSTLY_")
} | {int(llama_cpp.LLAMA_FTYPE_ALL_F32): "F32"}
# Not yet quantized: llama.cpp needs allow_requantize for any other source.
FLOAT_FILE_TYPES = frozenset({"F32", "F16", "BF16"})
HASH_BLOCK = 1 << 20
GGML_LOG_LEVEL_ERROR = 4
# llama.cpp logs a line per tensor as it quantizes it: "[  12/ 272] blk.1.attn_k.weight - [...], type = ...".
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")


class _Watch:
    """Reads llama.cpp's log while one quantization runs: progress every tenth of the tensors, and errors."""

    def __init__(self, source: Path, isq_type: str) -> None:
        self.source, self.isq_type = str(source), isq_type
        self.errors: list[str] = []
        self._next_tenth = 1

    def line(self, level: int, text: str) -> None:
        if level == GGML_LOG_LEVEL_ERROR and text.strip():
            self.errors.append(" ".join(text.split()))
        match = _TENSOR_LINE.match(text)
        if match:
            done, total = int(match[1]), int(match[2])
            if done * 10 >= self._next_tenth * total:
                self._next_tenth = done * 10 // total + 1
                log.info(
                    "quantizing model: progress",
                    extra={"path": self.source, "isq_type": self.isq_type, "tensors_done": done, "tensors": total},
                )


# One quantization at a time in this process: it uses every thread it is given, and the watch below reads
# llama.cpp's one, process-wide log.
_quantizing = threading.Lock()
_watch: _Watch | None = None


def file_type_name(file_type: int | str | None) -> str | None:
    if file_type is None or file_type == "":
        return None
    return FILE_TYPES.get(int(file_type), f"ftype {file_type}")


def observe_native_line(level: int, text: str) -> None:
    """Called with each line of llama.cpp's log (engine.py routes that log), for the quantization running."""
    if _watch is not None:
        _watch.line(level, text)


def file_sha256(path: Path) -> str:
    """The SHA-256 of the whole file. A content hash, not size and mtime: a file replaced in place (a new upload
    under the same name, a copy that keeps the mtime) must never be served from a stale cache entry. Hashing
    streams at about 1 GB/s, a small cost next to loading the same bytes into memory."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def gguf_file_type(path: Path) -> str | None:
    """The GGUF's file type (Q4_1, F16, ...) from its metadata, reading only the header and vocabulary."""
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = LlamaModel(path_model=str(path), params=params, verbose=False)
    try:
        return file_type_name(model.metadata().get("general.file_type"))
    finally:
        model.close()  # type: ignore[no-untyped-call]


def cached_file_name(source_sha256: str, isq_type: str) -> str:
    # llama.cpp's version is part of the key: a newer release may pick other tensor types for the same mix.
    return f"{source_sha256}-{isq_type}-llama-cpp-python-{llama_cpp.__version__}.gguf"


def quantized_model(source: Path, isq_type: str, cache_dir: Path, threads: int) -> Path:
    """The GGUF to serve for `source` quantized to `isq_type`: from the cache, or made now with llama.cpp's
    llama_model_quantize and written atomically (a crash leaves only a temporary file, never served).
    Blocking, and minutes long on a large model: call it off the event loop."""
    if isq_type not in LLAMACPP_ISQ_TYPES:
        raise ValueError(isq_type_problem("llamacpp", isq_type))
    with _quantizing:
        source_type = gguf_file_type(source)
        if source_type == isq_type:
            log.info(
                "model is already of the ISQ type: served as is", extra={"path": str(source), "isq_type": isq_type}
            )
            return source
        started = time.monotonic()
        target = cache_dir / cached_file_name(file_sha256(source), isq_type)
        if target.is_file():
            log.info(
                "quantized model found in the ISQ cache",
                extra={
                    "path": str(target),
                    "source": str(source),
                    "hash_seconds": round(time.monotonic() - started, 2),
                },
            )
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        _quantize(source, source_type, target, isq_type, threads)
        log.info(
            "quantized model",
            extra={
                "path": str(target),
                "source": str(source),
                "from_type": source_type,
                "isq_type": isq_type,
                "source_bytes": source.stat().st_size,
                "quantized_bytes": target.stat().st_size,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
        return target


def _quantize(source: Path, source_type: str | None, target: Path, isq_type: str, threads: int) -> None:
    global _watch
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMACPP_ISQ_TYPES[isq_type])
    params.nthread = threads
    # Quantizing an already quantized file goes through its dequantized weights: allowed, but it loses more than
    # quantizing the original F16/BF16 weights would, so say so.
    params.allow_requantize = source_type not in FLOAT_FILE_TYPES
    if params.allow_requantize:
        log.warning(
            "requantizing an already quantized model: quantizing its F16/BF16 original would lose less",
            extra={"path": str(source), "from_type": source_type, "isq_type": isq_type},
        )
    log.info(
        "quantizing model",
        extra={"path": str(source), "from_type": source_type, "isq_type": isq_type, "threads": threads},
    )
    # A name of its own per attempt: replicas sharing the cache volume may quantize the same file at once (the
    # last rename wins; both wrote the same bytes). A crash leaves a .partial file behind, never the final name.
    partial = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
    _watch = watch = _Watch(source, isq_type)
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if status != 0:
            why = "; ".join(watch.errors) or f"llama_model_quantize returned {status}"
            raise RuntimeError(f"llama.cpp could not quantize {source} to {isq_type}: {why}")
        # On disk before it gets its final name, so a power cut cannot leave a named but empty file.
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        _watch = None
        partial.unlink(missing_ok=True)
