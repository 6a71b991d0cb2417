"""Kubernetes probes: /health/live (the process serves) and /health/ready (the default model answers)."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Response


class HealthStatus(msgspec.Struct):
    status: str
    reason: str | None = None


@get(
    "/health/live",
    tags=["health"],
    summary="Liveness: 200 while the process can serve (also while a model loads, stalls or drains)",
    responses={503: ResponseSpec(HealthStatus, description="Dead: an engine died and only a restart brings it back")},
)
async def live(state: State) -> Response[HealthStatus]:
    reason = await state.service.registry.dead_engine()
    if reason is None:
        return Response(HealthStatus(status="alive"), status_code=200)
    return Response(HealthStatus(status="dead", reason=reason), status_code=503)


@get(
    "/health/ready",
    tags=["health"],
    summary="Readiness: 200 once the default model has loaded and answered a warm-up generation",
    responses={503: ResponseSpec(HealthStatus, description="Not ready: loading, failed, stalled or draining")},
)
async def ready(state: State) -> Response[HealthStatus]:
    is_ready, reason = await state.service.readiness()
    if is_ready:
        return Response(HealthStatus(status="ready"), status_code=200)
    return Response(HealthStatus(status="not_ready", reason=reason), status_code=503, headers={"Retry-After": "5"})
