"""Timing that survives a noisy machine: interleaved repetitions, best and median, ratios between bests.

On a shared machine the same work can run at full speed in one epoch and at half speed in the next. Timing
side A once and side B once compares whichever phases they happened to hit. So each benchmark here runs its
sides in turn (A, B, A, B, ...), several times, and reports every side's best (the least disturbed run) and
median, with the spread between its slowest and fastest run; ratios are taken between bests.
"""
from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved(sides: dict[str, Callable[[], int]], repeats: int) -> dict[str, list[float]]:
    """Run each side once per repetition, in turn; each call returns how many items it processed.

    Returns the rates (items per second) of every run, per side, in the order they ran.
    """
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            items = run()
            rates[name].append(items / (time.perf_counter() - start))
    return rates


def summary(rates: list[float]) -> dict[str, float]:
    """Best, median, slowest and the spread (slowest / best) of one side's rates."""
    best, slowest = max(rates), min(rates)
    return {"best": best, "median": statistics.median(rates), "slowest": slowest, "spread": slowest / best}


def write_results(name: str, payload: dict, table: list[str]) -> None:
    """Write ``benchmarks/results/NAME.json`` (the numbers) and ``NAME.md`` (the table the book includes)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
