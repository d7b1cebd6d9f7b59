"""Memory per cached example of the book's tf.data cache, against caching float32 arrays, and what it projects.

    .venv/bin/python benchmarks/cache_memory.py [--image-size 512] [--repeats 3] [--full-epoch]

Each measurement runs in a fresh Python process: it builds a pipeline at ``--image-size`` over the training
images that are present (the bundled sample unless SIIM_DATA_DIR is set), warms TensorFlow up on a few images,
then fills the in-memory cache with one pass and reads how much the process's resident memory (RSS) grew. The
book's cache holds uint8 images and masks (``utils.data.make_dataset``); the float32 variant caches what the
pipeline hands to the model, as the book's first version did. The two variants alternate (A, B, A, B, ...),
and the smallest growth of each is kept: allocator noise only ever adds memory.

With ``--full-epoch`` it also runs one epoch of the full-mode training pipeline over as many examples as the
common mirror's training files (10,712: the images present, repeated), which makes ``make_dataset`` cache them in
a temporary file, and records the process's peak resident memory. That takes several minutes.

Writes ``benchmarks/results/cache_memory.json`` and ``.md``; chapter 6 and the README quote them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import write_results  # noqa: E402

MIB = 2**20
# What the projections count: training DICOM files in the common Kaggle mirror, and the competition's full
# labelled stage-2 set (see chapter 6).
SETS = {"training files of the common mirror": 10_712, "labelled stage-2 images": 12_047}


def measure(variant: str, image_size: int) -> dict:
    """In this process: RSS growth from filling one cache variant, per example (or a full-size epoch's peak)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    import resource

    import psutil

    from utils.data import load_index, make_dataset
    from utils.source import data_root

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(data_root().path)

    def pipeline(frame):
        if variant == "uint8":  # the book's pipeline: its own cache, in memory
            return make_dataset(frame, image_size, batch_size=8, cache=True)
        return make_dataset(frame, image_size, batch_size=8, cache=False).unbatch().cache()  # float32 arrays

    if variant == "full-epoch":
        import pandas as pd

        n = SETS["training files of the common mirror"]
        large = pd.concat([index] * (n // len(index) + 1), ignore_index=True).head(n)
        batches = sum(1 for _ in make_dataset(large, image_size, batch_size=16, training=True))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        return {"variant": variant, "examples": n, "batches": batches, "peak_rss_gib": peak / 2**30}
    for _ in pipeline(index.head(8)):  # warm-up: graph tracing, thread pools, decoder buffers
        pass
    process = psutil.Process()
    before = process.memory_info().rss
    for _ in pipeline(index):
        pass
    grown = process.memory_info().rss - before
    return {"variant": variant, "examples": len(index), "bytes_per_example": grown / len(index)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-epoch", action="store_true", help="also measure a full-size epoch's peak memory")
    parser.add_argument("--measure", choices=["uint8", "float32", "full-epoch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.image_size)))
        return

    runs = {"uint8": [], "float32": []}
    for repeat in range(args.repeats):
        for variant in runs:  # interleaved, each in a fresh process
            command = [sys.executable, __file__, "--measure", variant, "--image-size", str(args.image_size)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(output.splitlines()[-1])
            runs[variant].append(result["bytes_per_example"] / MIB)
            print(f"repeat {repeat + 1}: {variant} cache {runs[variant][-1]:.3f} MiB per example")
    examples = result["examples"]

    sys.path.insert(0, str(ROOT))
    from utils.data import MEMORY_CACHE_LIMIT, SHUFFLE_BUFFER_LIMIT, cache_bytes_per_example

    best = {variant: min(values) for variant, values in runs.items()}
    payload = 2 * args.image_size**2 / MIB
    summary = {
        "image_size": args.image_size,
        "examples_measured": examples,
        "repeats": args.repeats,
        "mib_per_example": {v: round(b, 3) for v, b in best.items()},
        "mib_per_example_all_runs": {v: [round(x, 3) for x in values] for v, values in runs.items()},
        "uint8_payload_mib_per_example": payload,
        "memory_cache_limit_gib": MEMORY_CACHE_LIMIT / 2**30,
        "projections_gib": {
            name: {v: round(n * b / 1024, 1) for v, b in best.items()} for name, n in SETS.items()
        },
        "disk_cache_gib": {
            name: round(n * cache_bytes_per_example(args.image_size) / 2**30, 1) for name, n in SETS.items()
        },
    }
    if args.full_epoch:
        command = [sys.executable, __file__, "--measure", "full-epoch", "--image-size", str(args.image_size)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        full = json.loads(output.splitlines()[-1])
        summary["full_epoch_peak_rss_gib"] = round(full["peak_rss_gib"], 2)
        print(f"one full-size training epoch ({full['examples']:,} examples): "
              f"peak resident memory {full['peak_rss_gib']:.2f} GiB")
    summary["validation_cache_gib"] = {name: round(0.15 * n * best["uint8"] / 1024, 1) for name, n in SETS.items()}
    lines = [
        f"Cache memory at {args.image_size} px: resident-memory growth per cached example, best of {args.repeats} "
        f"interleaved runs over {examples} images (all runs: uint8 {summary['mib_per_example_all_runs']['uint8']}, "
        f"float32 {summary['mib_per_example_all_runs']['float32']} MiB).",
        "",
        "| cache | MiB per example (measured) | "
        + " | ".join(f"{n:,} {name}, in memory (projected)" for name, n in SETS.items()) + " |",
        "|---|---|" + "---|" * len(SETS),
    ]
    for variant, label in (("uint8", "uint8 image + mask (the book's)"), ("float32", "float32 image + mask")):
        projected = " | ".join(f"{summary['projections_gib'][name][variant]} GiB" for name in SETS)
        lines.append(f"| {label} | {best[variant]:.2f} | {projected} |")
    lines += [
        "",
        f"The uint8 payload is {payload:.2f} MiB per example. A set above {summary['memory_cache_limit_gib']:.0f} GiB "
        "is cached in a temporary file instead of memory: "
        + ", ".join(f"{gib} GiB of disk for the {name}" for name, gib in summary["disk_cache_gib"].items())
        + ". In a full-mode run the training cache is such a file, and memory holds the validation split's cache "
        "(15 % of the images: "
        + ", ".join(f"{gib} GiB of the {name}" for name, gib in summary["validation_cache_gib"].items())
        + f") and a shuffle buffer of at most {SHUFFLE_BUFFER_LIMIT // MIB} MiB.",
    ]
    if "full_epoch_peak_rss_gib" in summary:
        lines.append(
            f"\nOne epoch of the full-mode training pipeline (decode, disk cache, shuffle, augment; no model) over "
            f"{SETS['training files of the common mirror']:,} examples peaked at "
            f"{summary['full_epoch_peak_rss_gib']} GiB "
            "of resident memory."
        )
    write_results("cache_memory", summary, lines)


if __name__ == "__main__":
    main()
