"""llm_ready and llm_engine_state, the gauges the chart's alerts read, across the states a real model reaches
only by fault injection (tests/api/test_faults.py does that for the default model): here two models on
scripted engines, one stalled and one dead at once, on a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass

from llm_inference.engines.base import EngineStats
from llm_inference.engines.watchdog import StallWatch
from llm_inference.errors import EngineDead
from llm_inference.models.registry import ModelRegistry, ModelState
from llm_inference.service import InferenceService
from llm_inference.telemetry.metrics import Metrics
from tests.conftest import make_settings
from tests.telemetry.scrape import Scrape

DEFAULT, OTHER = "org/default-model", "org/other-model"


@dataclass
class StuckEngine:
    """What the health checks read: a liveness flag, a decode step counter and requests waiting."""

    dead: bool = False
    decode_steps: int = 0
    waiting: int = 0

    async def check_health(self) -> None:
        if self.dead:
            raise EngineDead("the scripted engine died")

    def stats(self) -> EngineStats:
        return EngineStats(running=0, waiting=self.waiting)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _states(scraped: Scrape, model: str) -> dict[str, float]:
    return {s.labels["state"]: s.value for s in scraped.matching("llm_engine_state", model=model, backend="scripted")}


async def test_ready_and_each_engine_state_as_the_probes_judge_them() -> None:
    settings = make_settings(LLM_ALLOWED_MODELS=f"{DEFAULT},{OTHER}", LLM_DEFAULT_MODEL=DEFAULT)
    service = InferenceService(settings=settings, registry=ModelRegistry(settings))  # nothing loads: no start()
    clock = Clock()
    service.stall_watch = StallWatch(stall_seconds=10, clock=clock)
    metrics = Metrics()

    async def scrape() -> Scrape:
        await metrics.observe_health(service)
        return Scrape(metrics.exposition().decode())

    loading = await scrape()
    assert loading.value("llm_ready") == 0 and not loading.matching("llm_engine_state")

    engines = {DEFAULT: StuckEngine(), OTHER: StuckEngine()}
    for entry in service.registry.entries():
        entry.state, entry.engine, entry.backend = ModelState.LOADED, engines[entry.spec.id], "scripted"  # type: ignore[assignment]
    healthy = await scrape()
    assert healthy.value("llm_ready") == 1
    assert _states(healthy, DEFAULT) == _states(healthy, OTHER) == {"healthy": 1, "stalled": 0, "dead": 0}

    # Both engines hold waiting requests and make no progress past the stall time.
    for engine in engines.values():
        engine.waiting = 2
    await scrape()
    clock.now = 11
    stuck = await scrape()
    assert stuck.value("llm_ready") == 0  # /health/ready answers for the default model, which is stalled
    assert _states(stuck, DEFAULT) == {"healthy": 0, "stalled": 1, "dead": 0}
    # The stall watch, as readiness, watches the default model only.
    assert _states(stuck, OTHER) == {"healthy": 1, "stalled": 0, "dead": 0}
    engines[OTHER].dead = True
    assert _states(await scrape(), OTHER) == {"healthy": 0, "stalled": 0, "dead": 1}

    engines[DEFAULT].decode_steps += 1  # it moves again
    moving = await scrape()
    assert moving.value("llm_ready") == 1 and _states(moving, DEFAULT)["healthy"] == 1

    service.draining = True
    assert (await scrape()).value("llm_ready") == 0
