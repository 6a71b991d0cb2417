"""The front-end benchmark still runs against the app as it is (its fake engine must keep up with the engine
protocol and the registry's calls): a tiny run, every token reaching the client as a frame. No timings."""

from __future__ import annotations

import argparse

from bench.frontend_overhead import SURFACES, _main


async def test_the_frontend_overhead_bench_streams_every_token_through_both_surfaces() -> None:
    report = await _main(argparse.Namespace(streams=2, tokens=4, rounds=1, out=None))
    assert set(report["surfaces"]) == set(SURFACES)
    for figures in report["surfaces"].values():
        assert len(figures["rounds"]) == 1 and figures["median_cpu_us_per_token"] > 0
