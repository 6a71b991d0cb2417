"""The shared store's metrics (LLM_STATE_URL): each call's duration and failures, whether the store answers, and
the requests that went on without it. Registered only when the store is configured."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# A call to a store on the same network takes well under a millisecond; the timeout (LLM_STATE_TIMEOUT_SECONDS,
# 0.5 s by default) ends the slowest.
STATE_CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class StateMetrics:
    """Telemetry's side of state/store.py's StoreObserver."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "llm_state_operation_duration_seconds",
            "Time of each call to the shared store (LLM_STATE_URL), failed ones included, by operation.",
            ["operation"],
            buckets=STATE_CALL_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "llm_state_errors",
            "Calls to the shared store that failed, by operation and error: timeout | connection | error | "
            "backoff (not tried: the store failed moments ago and is left alone for a while).",
            ["operation", "error"],
            registry=registry,
        )
        self.up = Gauge(
            "llm_state_up",
            "1 while the shared store answers (its last call succeeded), 0 from a failed call until one succeeds.",
            registry=registry,
        )
        self.up.set(1)
        self.fallbacks = Counter(
            "llm_state_fallbacks",
            "Requests that went on without the shared store, by feature and outcome: rate_limit allowed | refused "
            "(LLM_RATE_LIMIT_ON_STATE_FAILURE open | closed), tokens not_counted.",
            ["feature", "outcome"],
            registry=registry,
        )

    def call(self, operation: str, seconds: float, error: str | None) -> None:
        if error != "backoff":
            self.duration.labels(operation).observe(seconds)
        if error is not None:
            self.errors.labels(operation, error).inc()

    def reachable(self, up: bool) -> None:
        self.up.set(1 if up else 0)

    def fallback(self, feature: str, outcome: str) -> None:
        self.fallbacks.labels(feature, outcome).inc()
