"""What a vLLM engine says about its effective configuration in its log, for comparing two servers.

vLLM 0.26 logs, in every engine core, "Initializing a V1 LLM engine (vX) with config: key=value, ..." (the
whole VllmConfig, its compilation config as a dict: mode, cudagraph_mode, capture sizes, ...), "Chunked
prefill is enabled with max_num_batched_tokens=N." and "GPU KV cache size: N tokens". It does not log
max_num_seqs or async scheduling: `vllm serve` logs the arguments it was given ("non-default args: {...}"),
and this service logs "vLLM engine loaded" with max_num_seqs (JSON log); async scheduling is set by neither
(vLLM's default in both), which is what is recorded when no argument names it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

CONFIG_LINE = re.compile(r"Initializing a V1 LLM engine \(v([^)]*)\) with config: (.*)$")
CHUNKED_PREFILL = re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=(\d+)")
KV_CACHE = re.compile(r"KV cache size: ([\d,]+) tokens")
NON_DEFAULT_ARGS = re.compile(r"non-default args: (\{.*\})\s*$")
# Differences set on purpose: the name each server answers to and paths; everything else must be equal.
ALLOWED_DIFFERENCES = frozenset(
    {
        "model",
        "tokenizer",
        "served_model_name",
        "compilation_config.cache_dir",
        "compilation_config.local_cache_dir",
        "compilation_config.debug_dump_path",
    }
)
# The settings the comparison must see in both logs; a missing one is reported (the log format changed).
ESSENTIAL = (
    "max_num_batched_tokens",
    "max_num_seqs",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "enforce_eager",
    "tensor_parallel_size",
    "max_seq_len",
    "dtype",
    "compilation_config.cudagraph_mode",
)
_OPEN, _CLOSE = "([{<", ")]}>"


def split_top_level(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes: `a=1, b=[1, 2], c='x, y'` -> three items."""
    items, depth, quote, start = [], 0, "", 0
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append(text[start:index].strip())
            start = index + 1
        index += 1
    if text[start:].strip():
        items.append(text[start:].strip())
    return items


def parse_assignments(text: str) -> dict[str, str]:
    """`key=value, key=value` (VllmConfig's str) -> {key: value as logged}."""
    pairs = {}
    for item in split_top_level(text):
        key, sep, value = item.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


def parse_dict_repr(text: str) -> dict[str, str]:
    """A Python dict's repr (`{'mode': <X: 3>, 'sizes': [1, 2]}`) -> {key: value as logged}."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        return {}
    pairs = {}
    for item in split_top_level(body[1:-1]):
        key, sep, value = item.partition(": ")
        if sep:
            pairs[key.strip().strip("'\"")] = value.strip()
    return pairs


def parse_config_line(config: str) -> dict[str, str]:
    """The config line, with the compilation config's own entries as `compilation_config.KEY`."""
    flat = parse_assignments(config)
    compilation = flat.get("compilation_config", "")
    nested = parse_dict_repr(compilation)
    if not nested and compilation.endswith(")") and "(" in compilation:  # a dataclass repr instead of a dict
        nested = parse_assignments(compilation[compilation.index("(") + 1 : -1])
    if nested:
        del flat["compilation_config"]
        flat.update({f"compilation_config.{key}": value for key, value in nested.items()})
    return flat


def _messages(text: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Each line's message: plain lines as they are, this service's JSON records by their message."""
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                yield str(record.get("message", "")), record
                continue
        yield line, None


def engine_report(text: str) -> dict[str, Any]:
    """Everything one server's log says about its engine; `effective` is what two servers are compared on."""
    report: dict[str, Any] = {"vllm_version": None, "kv_cache_tokens": None, "non_default_args": None}
    effective: dict[str, str] = {}
    service: dict[str, Any] | None = None
    for message, record in _messages(text):
        if report["vllm_version"] is None and (match := CONFIG_LINE.search(message)):
            report["vllm_version"] = match[1]
            effective.update(parse_config_line(match[2]))
        elif "max_num_batched_tokens" not in effective and (match := CHUNKED_PREFILL.search(message)):
            effective["max_num_batched_tokens"] = match[1]
        elif report["kv_cache_tokens"] is None and (match := KV_CACHE.search(message)):
            report["kv_cache_tokens"] = int(match[1].replace(",", ""))
        elif report["non_default_args"] is None and (match := NON_DEFAULT_ARGS.search(message)):
            report["non_default_args"] = parse_dict_repr(match[1])
        elif record is not None and message == "vLLM engine loaded":
            service = {k: v for k, v in record.items() if k not in ("timestamp", "level", "logger", "message")}
    requested = report["non_default_args"] or {}
    if "max_num_batched_tokens" not in effective and service and "max_num_batched_tokens" in service:
        effective["max_num_batched_tokens"] = str(service["max_num_batched_tokens"])  # the engine's, as built
    if "max_num_seqs" in requested:
        effective["max_num_seqs"] = requested["max_num_seqs"]
    elif service and "max_num_seqs" in service:
        effective["max_num_seqs"] = str(service["max_num_seqs"])
    effective["async_scheduling"] = requested.get("async_scheduling", "not set (vLLM's default)")
    report["service_reported"] = service
    report["effective"] = effective
    report["missing"] = [key for key in ESSENTIAL if key not in effective]
    return report


def compare(effective: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Keys whose values differ between the servers (the allowed ones aside), and keys only some logged."""
    names = list(effective)
    keys = sorted(set().union(*(set(e) for e in effective.values())))
    differing, one_sided = {}, {}
    for key in keys:
        values = {name: effective[name].get(key) for name in names}
        if None in values.values():
            one_sided[key] = values
        elif len(set(values.values())) > 1 and key not in ALLOWED_DIFFERENCES:
            differing[key] = values
    return {"differing": differing, "only_in_some_logs": one_sided}
