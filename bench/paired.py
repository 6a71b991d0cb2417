"""Paired comparison of two servers over alternating passes: a ratio (ours / theirs) with its 95% confidence
interval, and whether a cell meets its target. Pure functions, no third-party imports (tests run them here).
Used by the GPU benchmark (bench/gpu/run_bench.py) and the CPU ones (bench/cpu/run.py, bench/cpu/multiturn.py).

Method: a cell's passes run in rounds, one pass of each server, back to back, the order alternating from round
to round (A B, B A, A B, …, so A B B A A B …), each round on prompts of its own, the same for both servers.
For round i, d_i = ln(ours_i / theirs_i). The interval is Student's t on the d_i:

    exp(mean(d) ± t(0.975, n - 1) · sd(d) / √n)

A round's two passes share the machine's state of their moment, so slow drift (clocks, a neighbour) cancels
within it; logs make a gain of 5% and a loss of 1/1.05 symmetric. The figure printed beside the interval is the median of
the rounds' ratios. A cell is met when the interval's lower end is ≥ 0.97 and that median ≥ 1.0 (for a
lower-is-better figure, TTFT: the upper end ≤ 1/0.97 and the median ≤ 1.0); it is resolved when the interval
is no wider than ±3% (half its log-width ≤ ln 1.03).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

FLOOR = 0.97  # the least lower end of a met cell's interval
RESOLUTION = 0.03  # the widest half-interval that still tells 0.97 from 1.0
# Student's t, two-sided 95% (0.975 quantile), by degrees of freedom; between entries the smaller df's value
# (wider, so conservative), past the last the normal's.
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    25: 2.060,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def t975(df: int) -> float:
    if df < 1:
        raise ValueError("a t interval needs at least two pairs")
    if df > 120:
        return 1.960
    return _T975[max(k for k in _T975 if k <= df)]


def paired_ratio(
    ours: Sequence[float | None], theirs: Sequence[float | None], higher_is_better: bool = True
) -> dict[str, Any]:
    """The ratio ours / theirs of one figure over paired passes (ours[i] ran next to theirs[i]).

    Pairs missing a figure (a failed pass) are left out; `pairs` says how many counted."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if a and b and a > 0 and b > 0]
    result: dict[str, Any] = {
        "pairs": len(ratios),
        "ratios": [round(r, 4) for r in ratios],
        "median": None,
        "geomean": None,
        "ci95": None,
        "halfwidth": None,
        "resolved": False,
        "met": False,
    }
    if not ratios:
        return result
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    median = statistics.median(ratios)
    result.update(median=round(median, 4), geomean=round(math.exp(mean), 4))
    if len(ratios) < 2:
        return result
    half = t975(len(ratios) - 1) * statistics.stdev(logs) / math.sqrt(len(ratios))
    low, high = math.exp(mean - half), math.exp(mean + half)
    result.update(
        ci95=[round(low, 4), round(high, 4)],
        halfwidth=round(math.exp(half) - 1, 4),
        resolved=half <= math.log(1 + RESOLUTION),
        met=(low >= FLOOR and median >= 1.0) if higher_is_better else (high <= 1 / FLOOR and median <= 1.0),
    )
    return result


def rounds_order(names: Sequence[str], rounds: int, cell: int) -> list[str]:
    """The cell's passes in order: round j runs the servers forward when (cell + j) is even, else backward, so
    A B B A A B … within a cell and the first server alternating from cell to cell."""
    order: list[str] = []
    for j in range(rounds):
        order += list(names) if (cell + j) % 2 == 0 else list(names)[::-1]
    return order


def describe(comparison: dict[str, Any]) -> str:
    """`1.03x [0.99, 1.07] met` for a table cell (with the multiplication sign)."""
    if comparison["median"] is None:
        return "—"
    if comparison["ci95"] is None:
        return f"{comparison['median']:.2f}× (1 pair)"
    low, high = comparison["ci95"]
    verdict = "met" if comparison["met"] else ("not met" if comparison["resolved"] else "not met, unresolved")
    return f"{comparison['median']:.2f}× [{low:.2f}, {high:.2f}] {verdict}"


# The method in one line, for a result file beside its `comparisons`.
METHOD = (
    "paired ratio ours/theirs over rounds (one pass of each server per round, back to back, order alternating): "
    "d_i = ln(ours_i / theirs_i), 95% CI = exp(mean(d) ± t(0.975, n-1) · sd(d) / √n), shown beside the median of "
    f"the rounds' ratios; met: lower end ≥ {FLOOR} and median ≥ 1.0 (lower is better: upper end ≤ 1/{FLOOR} and "
    f"median ≤ 1.0); resolved: the interval within ±{RESOLUTION:.0%}; a round missing a figure is left out"
)

# Per server, its rounds in order; per round, level -> figure name -> the pass's figure (None: no figure).
Rounds = Sequence[Mapping[str, Mapping[str, float | None]]]


def compare_rounds(
    runs: Mapping[str, Rounds],
    baseline: str,
    higher_is_better: Mapping[str, bool],
    levels: Sequence[str],
    prefix: str = "llm-inference",
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """For every server whose name starts with `prefix`, against `baseline`: per level and figure, the paired
    ratio over the rounds (round i of one ran next to round i of the other). Empty when the baseline did not
    run."""
    if baseline not in runs:
        return {}
    theirs = runs[baseline]
    return {
        name: {
            level: {
                figure: paired_ratio(
                    [r[level].get(figure) for r in ours], [r[level].get(figure) for r in theirs], higher
                )
                for figure, higher in higher_is_better.items()
            }
            for level in levels
        }
        for name, ours in runs.items()
        if name.startswith(prefix) and name != baseline
    }


def comparison_lines(
    comparisons: Mapping[str, Mapping[str, Mapping[str, dict[str, Any]]]],
    baseline: str,
    labels: Mapping[str, str],
    level_label: str = "c",
    note: str = "",
) -> list[str]:
    """compare_rounds' result as a table, a row per server, level and figure (`labels`: figure -> its name in
    the table, in the table's order): describe()'s `1.03x [0.99, 1.07] met`. `note` follows each server's heading."""
    lines: list[str] = []
    for name, by_level in comparisons.items():
        heading = f"{name} / {baseline}: median of the rounds' ratios [95% t-interval on their logs], verdict"
        lines += ["", heading + (f"; {note}" if note else "")]
        for level, figures in by_level.items():
            for figure, label in labels.items():
                lines.append(f"  {level_label}={level:<4} {label:12} {describe(figures[figure])}")
    pairs = [c["pairs"] for by_level in comparisons.values() for f in by_level.values() for c in f.values()]
    if pairs and min(pairs) < 2:
        lines.append(
            "\nwhere fewer than 2 rounds pair up (fewer than 2 rounds run, or a round left out for a missing figure) "
            "the interval cannot be computed: Student's t needs at least two; run --rounds 2 or more"
        )
    return lines
