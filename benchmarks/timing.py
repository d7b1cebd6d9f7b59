"""Timing that survives a noisy machine: interleaved repetitions, best and median, ratios between bests.

On a shared machine the same work can run at full speed in one epoch and at half speed in the next. Timing
side A once and side B once compares whichever phases they happened to hit. So each benchmark here runs its
sides in turn (A, B, A, B, ...), several times, and reports every side's best (the least disturbed run) and
median, with the spread between its slowest and fastest run; ratios are taken between bests.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


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


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()``, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device() -> str:
    """What TensorFlow computes on here: the GPUs it sees, else the CPU model and core count (read, never typed)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    cpu = f"{cpu_model()}, {os.cpu_count()} CPU cores"
    return f"{len(gpus)} GPU(s) ({', '.join(g.name for g in gpus)}), {cpu}" if gpus else f"{cpu}, no GPU visible"


def provenance() -> dict:
    """What made a result file: commit (and whether the checkout had uncommitted changes), command line, library
    versions, the sample version (``utils.sample.VERSION``), CPU model, device and date."""
    sys.path.insert(0, str(ROOT))
    from utils.sample import VERSION

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown (not a git checkout)", None
    versions = {}
    for package in ("tensorflow", "keras", "keras-tuner", "numpy", "pydicom"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "commit": commit, "uncommitted_changes": dirty,
        "command": shlex.join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "mode": os.environ.get("UNET_BOOK_MODE", "quick"),
        "versions": {"python": platform.python_version(), **versions},
        "sample_version": VERSION, "cpu": cpu_model(), "device": device(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def provenance_line(origin: dict) -> str:
    """One sentence for a result table: what made it."""
    versions = ", ".join(f"{name} {version}" for name, version in origin["versions"].items() if version)
    changes = " with uncommitted changes" if origin.get("uncommitted_changes") else ""
    return (f"Made by `{origin['command']}` (mode {origin['mode']}) at commit {origin['commit'][:7]}{changes}, "
            f"sample version {origin['sample_version']}, on {origin['device']}; {versions}; "
            f"{origin['date'][:10]}.")


def write_results(name: str, payload: dict, table: list[str], origin: dict | None = None) -> None:
    """Write ``benchmarks/results/NAME.json`` (the numbers, with ``provenance``) and ``NAME.md`` (the table the
    book includes, ending with what made it). ``origin``: a ``provenance()`` taken when the run started (default:
    now)."""
    origin = origin or provenance()
    payload = {**payload, "provenance": origin}
    table = [*table, "", provenance_line(origin)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


def paired(values: dict[str, list[float]]) -> dict:
    """Two arms measured on the same seeds (``values``: arm name -> one value per seed, in the same seed order;
    the second arm minus the first is the difference). The difference "exceeds the seed spread" when the mean of
    the paired differences is larger than the larger of the two arms' sample standard deviations over seeds *and*
    every paired difference has the same sign: the rule of every seed comparison in the book."""
    (first, a), (second, b) = values.items()
    differences = [y - x for x, y in zip(a, b, strict=True)]
    stds = {name: statistics.stdev(v) if len(v) > 1 else float("nan") for name, v in values.items()}
    mean_difference = statistics.fmean(differences)
    same_sign = all(d > 0 for d in differences) or all(d < 0 for d in differences)
    return {"mean": {name: statistics.fmean(v) for name, v in values.items()}, "std": stds,
            "paired_differences": differences, "mean_difference": mean_difference,
            "largest_std": max(stds.values()),
            "exceeds_seed_spread": bool(abs(mean_difference) > max(stds.values()) and same_sign)}
