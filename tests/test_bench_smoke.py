"""The front-end benchmark still runs against the app as it is (its fake engine must keep up with the engine
protocol and the registry's calls): a tiny run, every token reaching the client as a frame. The GPU benchmark's
plan and statistics, on made-up numbers. No timings."""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import pytest

from bench.frontend_overhead import SURFACES, _main


async def test_the_frontend_overhead_bench_streams_every_token_through_both_surfaces() -> None:
    report = await _main(argparse.Namespace(streams=2, tokens=4, rounds=1, out=None))
    assert set(report["surfaces"]) == set(SURFACES)
    for figures in report["surfaces"].values():
        assert len(figures["rounds"]) == 1 and figures["median_cpu_us_per_token"] > 0


# The GPU benchmark's method, checked here on made-up numbers: its plan, its pass order and its intervals.
sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "gpu"))
import paired  # noqa: E402
import run_bench  # noqa: E402


def test_the_paired_interval_is_a_t_interval_on_the_rounds_log_ratios() -> None:
    ours, theirs = [102.0, 99.0, 104.0, 101.0, 103.0], [100.0, 100.0, 100.0, 100.0, 100.0]
    result = paired.paired_ratio(ours, theirs)
    logs = [math.log(a / b) for a, b in zip(ours, theirs, strict=True)]
    half = 2.776 * statistics.stdev(logs) / math.sqrt(5)  # t(0.975, 4 degrees of freedom)
    mean = statistics.fmean(logs)
    assert result["pairs"] == 5 and result["median"] == 1.02
    assert result["ci95"] == [round(math.exp(mean - half), 4), round(math.exp(mean + half), 4)]
    assert result["ci95"][0] >= 0.97 and result["met"] and result["resolved"]
    # Too noisy to tell: not met, and said to be unresolved.
    noisy = paired.paired_ratio([110.0, 92.0, 108.0, 94.0], [100.0] * 4)
    assert noisy["median"] >= 1.0 and noisy["ci95"][0] < 0.97 and not noisy["met"] and not noisy["resolved"]
    assert "unresolved" in paired.describe(noisy)
    # Lower is better (TTFT): met when the upper end is <= 1/0.97 and the median <= 1.
    assert paired.paired_ratio([20.0, 20.2, 19.8], [21.0, 21.0, 21.0], higher_is_better=False)["met"]
    # A failed pass leaves its round out; one round gives no interval.
    assert paired.paired_ratio([None, 5.0], [4.0, 5.0])["pairs"] == 1
    assert paired.paired_ratio([None, 5.0], [4.0, 5.0])["ci95"] is None


def test_the_rounds_alternate_within_a_cell_and_from_cell_to_cell() -> None:
    assert paired.rounds_order(["A", "B"], 3, cell=0) == ["A", "B", "B", "A", "A", "B"]
    assert paired.rounds_order(["A", "B"], 2, cell=1) == ["B", "A", "A", "B"]


def test_the_default_matrix_plan_pins_the_client_apart_and_fits_about_twenty_minutes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = run_bench.parse_args(
        ["--model-dir", "/nonexistent", "--out", "/tmp/x.json", "--server-cpus", "0-7", "--client-cpus", "8-15"]
    )
    assert [w.name for w in args.workloads] == ["256x128", "1024x256", "4096x256", "1900x64", "128x512"]
    estimate = run_bench.plan(args)
    assert len(estimate["cells"]) == 20 and all(len(c["order"]) == 2 * args.rounds for c in estimate["cells"])
    assert estimate["server_cpus"] == "0-7" and estimate["client_cpus"] == "8-15"
    assert estimate["total_seconds"] <= 21 * 60, estimate["total_seconds"]
    # The offline runs are long enough to trust: at least three batches of max_num_seqs each.
    assert all(run["prompts"] >= 3 * args.max_num_seqs for run in estimate["offline"].values())
    run_bench.print_plan(estimate, args)
    assert "estimate:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_bench.parse_args(["--model-dir", "/x", "--out", "/x", "--server-cpus", "0-8", "--client-cpus", "8-15"])
    assert run_bench.split_cpus(frozenset(range(16))) == (frozenset(range(8)), frozenset(range(8, 16)))
    assert run_bench.split_cpus(frozenset({0, 1})) is None


def test_a_cell_on_fake_passes_gives_each_server_its_rounds_and_the_ratio_its_interval() -> None:
    rates = {"vllm_serve": 1000.0, "ours": 1050.0}
    calls: list[str] = []

    def run_pass(name: str, prompts: list[str]) -> list[dict[str, float]]:
        calls.append(name)
        jitter = 1 + 0.02 * ((len(calls) - 1) // 2)  # the machine's drift, shared by a round's two passes
        seconds = 100 / (rates[name] * jitter)
        return [
            {"start": 0.0, "end": seconds, "tokens": 50, "ttft": 0.02, "itl": [0.01], "tail": 0.0},
            {"start": 0.0, "end": seconds, "tokens": 50, "ttft": 0.02, "itl": [0.01], "tail": 0.0},
        ]

    prompt_sets = [[f"set {i}"] for i in range(4)]
    runs = run_bench.run_cell(run_pass, ["vllm_serve", "ours"], 4, 0, 2, prompt_sets)
    assert calls == ["vllm_serve", "ours", "ours", "vllm_serve", "vllm_serve", "ours", "ours", "vllm_serve"]
    results, comparisons = run_bench.cell_result(runs, 2)
    assert len(results["ours"]["passes"]) == 4
    tokens_per_s = comparisons["ours"]["output_tokens_per_s"]
    # Drift of 2% a round moves both servers alike: the paired ratio does not see it.
    assert tokens_per_s["pairs"] == 4 and tokens_per_s["ci95"] == [1.05, 1.05]
    assert tokens_per_s["met"]
    report = {
        "valid": True,
        "kv_cache_tokens": [1, 1],
        "kv_valid": True,
        "engine_config": {"differing": {}},
        "results": {"16x8": {name: [result] for name, result in results.items()}},
        "comparisons": {"16x8": {"2": comparisons}},
        "summary": run_bench.summarize_comparisons({"16x8": {"2": comparisons}}),
    }
    assert report["summary"] == {"cells": 1, "met": 1, "resolved": 1}
    assert "**ours / vllm serve** | **1.05× [1.05, 1.05] met**" in run_bench.table(report)
