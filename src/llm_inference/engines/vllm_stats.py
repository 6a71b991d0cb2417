"""The vLLM engine's own KV-cache figures (usage, prefix-cache hits), read through one minimal stat logger.

vLLM reports its scheduler's state (KV-cache usage among it) only to stat loggers. Its default loggers
(Prometheus, the periodic log line) cost work on the event loop every step, so the engine runs without them;
this one only keeps the last figure, which /metrics reads at scrape time.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.metrics.loggers import StatLoggerBase


class KvCacheUsage:
    """Shared between the engine adapter and the logger vLLM builds from the factory below."""

    def __init__(self) -> None:
        self.ratio: float | None = None
        # Since start: prompt tokens vLLM looked up in its prefix cache, and those it found there.
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    def logger_factory(self, vllm_config: Any, engine_index: int = 0) -> StatLoggerBase:
        return _Recorder(self)


class _Recorder(StatLoggerBase):  # type: ignore[misc]  # vLLM is untyped here (not installed for mypy)
    def __init__(self, usage: KvCacheUsage) -> None:  # vLLM calls the factory, not this, with its config
        self._usage = usage

    def record(self, scheduler_stats: Any, iteration_stats: Any, *_: Any, **__: Any) -> None:
        if scheduler_stats is not None:
            self._usage.ratio = float(scheduler_stats.kv_cache_usage)
            prefix = scheduler_stats.prefix_cache_stats
            self._usage.prefix_cache_queries += int(prefix.queries)
            self._usage.prefix_cache_hits += int(prefix.hits)

    def log_engine_initialized(self) -> None:
        pass
