"""Images per second of the book's tf.data pipeline against a naive Python loader, interleaved in one run.

    .venv/bin/python benchmarks/data_pipeline.py [--sizes 256 512] [--batch-size 16] [--repeats 3]

Three sides, run in turn (see ``timing.py``):
- naive: a Python generator that reads each batch with pydicom (``load_example``), no parallelism, no cache;
- cold: one epoch of ``make_dataset`` without its cache, so every file is decoded (in TensorFlow, in parallel,
  shrunk while decoding where the size allows: ``utils.dicom.decode_jpeg_frame``);
- warm: one epoch served by the pipeline's cache of resized uint8 arrays.

Writes ``benchmarks/results/data_pipeline.json`` and ``.md``; chapter 6 includes the table.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import interleaved, summary, write_results  # noqa: E402

from utils.data import load_example, load_index, make_dataset  # noqa: E402
from utils.source import data_root  # noqa: E402


def naive_batches(index, image_size: int, batch_size: int):
    """What many first attempts look like: a Python generator that decodes each batch when it is asked for."""
    rows = list(zip(index["path"], index["rles"]))
    for start in range(0, len(rows), batch_size):
        images, masks = [], []
        for path, rles in rows[start:start + batch_size]:
            image, mask = load_example(path, rles)
            images.append(tf.image.resize(image[..., None], (image_size, image_size), "bilinear"))
            masks.append(tf.image.resize(mask[..., None].astype(np.float32), (image_size, image_size), "nearest"))
        yield tf.stack(images), tf.stack(masks)


def count(batches) -> int:
    return sum(int(images.shape[0]) for images, _ in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    source = data_root()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(source.path)
    count(make_dataset(index.head(4), 64, 2, cache=False))  # warm-up: graph tracing, thread pools
    count(naive_batches(index.head(4), 64, 2))
    header = (f"{len(index)} images from {source.description}; {os.cpu_count()} CPU cores; batch {args.batch_size}; "
              f"each side timed {args.repeats} times, interleaved. Rates in images/s; ratios between bests.")
    table = [header, "", "| image size | loader | best | median | slowest / best | best vs naive |",
             "|---|---|---|---|---|---|"]
    payload = {"images": len(index), "cpu_cores": os.cpu_count(), "batch_size": args.batch_size,
               "repeats": args.repeats, "sizes": {}}
    for size in args.sizes:
        cached = make_dataset(index, size, args.batch_size)
        count(cached)  # fill the cache
        uncached = make_dataset(index, size, args.batch_size, cache=False)
        rates = interleaved({
            "naive": lambda size=size: count(naive_batches(index, size, args.batch_size)),
            "cold": lambda uncached=uncached: count(uncached),
            "warm": lambda cached=cached: count(cached),
        }, args.repeats)
        stats = {name: summary(values) for name, values in rates.items()}
        naive = stats["naive"]["best"]
        payload["sizes"][str(size)] = {
            name: {**stats[name], "runs": rates[name], "vs_naive": stats[name]["best"] / naive} for name in rates
        }
        labels = {"naive": "naive (pydicom per batch, Python loop)", "cold": "tf.data, cold (decodes every file)",
                  "warm": "tf.data, warm (from the cache)"}
        for name, label in labels.items():
            s = stats[name]
            table.append(f"| {size} | {label} | {s['best']:.0f} | {s['median']:.0f} | {s['spread']:.2f} | "
                         f"{s['best'] / naive:.1f}x |")
    write_results("data_pipeline", payload, table)


if __name__ == "__main__":
    main()
