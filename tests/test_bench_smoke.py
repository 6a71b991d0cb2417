"""The front-end benchmark still runs against the app as it is (its fake engine must keep up with the engine
protocol and the registry's calls): a tiny run, every token reaching the client as a frame. The GPU benchmark's
plan and statistics, on made-up numbers. No timings."""

from __future__ import annotations

import argparse
import json
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
import run_bench  # noqa: E402

from bench import paired  # noqa: E402


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


# The CPU benchmarks' paired ratios against llama-server (bench/paired.py), on made-up rounds: no servers.
from bench.cpu import multiturn  # noqa: E402
from bench.cpu import run as cpu_run  # noqa: E402


def cpu_round(tokens_per_s: float, ttft_ms: float, itl_ms: float) -> dict[int, dict[str, float]]:
    figures = {
        "output_tokens_per_second": tokens_per_s,
        "ttft_p50_ms": ttft_ms,
        "ttft_p99_ms": ttft_ms * 1.5,
        "itl_p50_ms": itl_ms,
        "itl_p99_ms": itl_ms * 2,
        "failed": 0,
    }
    return {1: dict(figures), 8: {**figures, "output_tokens_per_second": tokens_per_s * 1.5}}


def test_the_cpu_bench_pairs_each_round_of_ours_with_llama_servers_and_gives_each_ratio_its_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    drift = [1.0, 1.02, 0.97, 1.04]  # the machine's state of a round, shared by its passes
    ttft_ours = [300.0, 330.0, 310.0, 320.0]  # noisy rounds: an interval too wide to tell
    runs = {
        "llm-inference": [cpu_round(105 * d, t, 8.0 * d) for d, t in zip(drift, ttft_ours, strict=True)],
        "llm-inference@baseline": [cpu_round(90 * d, 300 * d, 10.0 * d) for d in drift],
        "llama-server": [cpu_round(100 * d, 300 * d, 9.0 * d) for d in drift],
        "llama_cpp.server": [cpu_round(50 * d, 600 * d, 20.0 * d) for d in drift],
    }
    compared = cpu_run.comparisons(runs, [1, 8])
    # Ours and the baseline checkout against llama-server; llama_cpp.server is not compared.
    assert set(compared) == {"llm-inference", "llm-inference@baseline"}
    assert set(compared["llm-inference"]) == {"1", "8"}
    assert set(compared["llm-inference"]["1"]) == set(cpu_run.METRICS)
    ours = compared["llm-inference"]["1"]
    # The drift moves both servers of a round alike: the paired ratio does not see it.
    assert ours["output_tokens_per_second"]["pairs"] == 4
    assert ours["output_tokens_per_second"]["ci95"] == [1.05, 1.05]
    assert ours["output_tokens_per_second"]["met"] and ours["output_tokens_per_second"]["resolved"]
    # ITL, lower is better: ours 8 against 9 ms in every round, met.
    assert ours["itl_p50_ms"]["median"] == round(8 / 9, 4) and ours["itl_p50_ms"]["met"]
    # TTFT p50: a t interval on the rounds' log ratios, 3 degrees of freedom.
    logs = [math.log(t / (300 * d)) for t, d in zip(ttft_ours, drift, strict=True)]
    half = 3.182 * statistics.stdev(logs) / math.sqrt(4)
    mean = statistics.fmean(logs)
    ttft = ours["ttft_p50_ms"]
    assert ttft["ci95"] == [round(math.exp(mean - half), 4), round(math.exp(mean + half), 4)]
    assert not ttft["met"] and not ttft["resolved"]
    # The baseline checkout: 0.9x tok/s, resolved and not met; ITL 10 against 9 ms, lower is better: not met.
    baseline = compared["llm-inference@baseline"]["8"]
    assert baseline["output_tokens_per_second"]["ci95"] == [0.9, 0.9]
    assert baseline["output_tokens_per_second"]["resolved"] and not baseline["output_tokens_per_second"]["met"]
    assert not baseline["itl_p99_ms"]["met"]
    # The result file's shape: what json writes is what the run holds (levels as strings).
    assert json.loads(json.dumps(compared)) == compared
    assert "t(0.975, n-1)" in paired.METHOD and "ln(ours_i / theirs_i)" in paired.METHOD
    cpu_run.print_comparisons(compared)
    out = capsys.readouterr().out
    assert "llm-inference / llama-server" in out and "llm-inference@baseline / llama-server" in out
    assert "c=1    tok/s        1.05× [1.05, 1.05] met" in out
    assert "c=8    tok/s        0.90× [0.90, 0.90] not met" in out
    assert "not met, unresolved" in out  # ours' TTFT p50
    assert "cannot be computed" not in out


def test_the_cpu_bench_without_llama_server_or_with_one_round_compares_what_it_can(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cpu_run.comparisons({"llm-inference": [cpu_round(100, 300, 9)]}, [1, 8]) == {}
    one_round = {"llm-inference": [cpu_round(105, 300, 9)], "llama-server": [cpu_round(100, 300, 9)]}
    compared = cpu_run.comparisons(one_round, [1])
    tokens_per_s = compared["llm-inference"]["1"]["output_tokens_per_second"]
    assert tokens_per_s["pairs"] == 1 and tokens_per_s["median"] == 1.05
    assert tokens_per_s["ci95"] is None and not tokens_per_s["met"]
    cpu_run.print_comparisons(compared)
    out = capsys.readouterr().out
    assert "1.05× (1 pair)" in out and "the interval cannot be computed" in out


def test_the_cpu_bench_alternates_two_servers_round_by_round_and_rotates_more() -> None:
    assert [cpu_run.round_order(["A", "B"], i) for i in range(4)] == [["A", "B"], ["B", "A"], ["A", "B"], ["B", "A"]]
    assert [cpu_run.round_order(["A", "B", "C"], i) for i in range(3)] == [
        ["A", "B", "C"],
        ["B", "C", "A"],
        ["C", "A", "B"],
    ]


def multiturn_round(turn_ms: list[float], hit_rate: float | None = None) -> dict[str, object]:
    figures: dict[str, object] = {
        "1": {"turn_ttft_p50_ms": turn_ms, "turn5_ttft_ms": [turn_ms[-1]]},
        "8": {"turn_ttft_p50_ms": [ms * 5 for ms in turn_ms], "turn5_ttft_ms": [turn_ms[-1] * 5] * 8},
    }
    if hit_rate is not None:
        figures["prefix_cache_hit_rate"] = hit_rate
    return figures


def test_the_multiturn_bench_pairs_each_turns_ttft_with_llama_servers(capsys: pytest.CaptureFixture[str]) -> None:
    drift = [1.0, 1.05, 0.95]
    ours_turn5 = [1000.0, 1100.0, 950.0]
    runs = {
        "llm-inference": [
            multiturn_round([330 * d, 400 * d, 500 * d, 600 * d, t], hit_rate=0.6)
            for d, t in zip(drift, ours_turn5, strict=True)
        ],
        "llama-server": [multiturn_round([300 * d, 450 * d, 700 * d, 900 * d, 1300 * d]) for d in drift],
    }
    compared = multiturn.comparisons(runs, [1, 8])
    assert set(compared) == {"llm-inference"}
    assert set(compared["llm-inference"]) == {"1", "8"}
    assert list(compared["llm-inference"]["1"]) == [f"turn{t}_ttft_p50_ms" for t in range(1, 6)]
    by_turn = compared["llm-inference"]["8"]
    # Turn 1: ours 10% slower in every round, lower is better: resolved, not met.
    turn1 = by_turn["turn1_ttft_p50_ms"]
    assert turn1["ci95"] == [1.1, 1.1] and turn1["resolved"] and not turn1["met"]
    turn5 = by_turn["turn5_ttft_p50_ms"]
    logs = [math.log(t / (1300 * d)) for t, d in zip(ours_turn5, drift, strict=True)]
    half = 4.303 * statistics.stdev(logs) / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    mean = statistics.fmean(logs)
    assert turn5["pairs"] == 3
    assert turn5["ci95"] == [round(math.exp(mean - half), 4), round(math.exp(mean + half), 4)]
    assert turn5["ci95"][1] < 1 and turn5["met"]  # lower is better: the whole interval below 1/0.97
    assert json.loads(json.dumps(compared)) == compared
    multiturn.print_comparisons(compared)
    out = capsys.readouterr().out
    assert "llm-inference / llama-server" in out and "conv=8    turn 5" in out
    # Without llama-server nothing is compared; one round gives no interval.
    assert multiturn.comparisons({"llm-inference": runs["llm-inference"]}, [1]) == {}
    one = {name: rounds[:1] for name, rounds in runs.items()}
    single = multiturn.comparisons(one, [1])
    assert single["llm-inference"]["1"]["turn5_ttft_p50_ms"]["ci95"] is None


from bench.result_files import unused  # noqa: E402


def test_a_second_run_of_a_day_writes_beside_the_first_instead_of_over_it(tmp_path: Path) -> None:
    first = tmp_path / "cpu-2026-12-07.json"
    assert unused(first) == first
    first.write_text("{}")
    second = unused(first)
    assert second == tmp_path / "cpu-2026-12-07-2.json"
    second.write_text("{}")
    assert unused(first) == tmp_path / "cpu-2026-12-07-3.json"
    assert first.read_text() == "{}"


from bench.cpu import single_stream  # noqa: E402


def test_the_single_stream_bench_gives_each_block_its_median_ratio_with_the_right_direction() -> None:
    def request(tok_s: float, ttft: float, itl: float) -> dict[str, float]:
        return {"output_tokens_per_second": tok_s, "ttft_p50_ms": ttft, "itl_p50_ms": itl}

    block = {
        "llm-inference": [request(110, 300, 9.0), request(100, 330, 9.9), request(105, 310, 9.5)],
        "llama-server": [request(100, 330, 10.0), request(100, 330, 9.0), request(100, 310, 9.5)],
    }
    ratios = single_stream.block_ratios(block)
    # Ours / llama-server per pair, the median of the three: tok/s 1.1, 1.0, 1.05; TTFT 0.909, 1.0, 1.0.
    assert ratios["output_tokens_per_second"] == pytest.approx(1.05)
    assert ratios["ttft_p50_ms"] == pytest.approx(1.0)
    assert ratios["itl_p50_ms"] == pytest.approx(1.0)
