"""Images per second of the book's tf.data pipeline against a naive Python loader, in one run.

    .venv/bin/python benchmarks/data_pipeline.py [--sizes 256 512] [--batch-size 16]

Cold epoch: the first pass, which decodes every DICOM file. Warm epoch: the second pass, served from the
in-memory cache of decoded, resized arrays. The naive loader reads each batch with pydicom in a Python loop
(no parallelism, no cache), so its every epoch is cold. Ratios are taken within this one run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from utils.data import load_example, load_index, make_dataset  # noqa: E402
from utils.source import data_root  # noqa: E402


def naive_batches(index, image_size, batch_size):
    """What many first attempts look like: a Python generator that decodes each batch when it is asked for."""
    rows = list(zip(index["path"], index["rles"]))
    for start in range(0, len(rows), batch_size):
        images, masks = [], []
        for path, rles in rows[start:start + batch_size]:
            image, mask = load_example(path, rles)
            images.append(tf.image.resize(image[..., None], (image_size, image_size), "bilinear"))
            masks.append(tf.image.resize(mask[..., None].astype(np.float32), (image_size, image_size), "nearest"))
        yield tf.stack(images), tf.stack(masks)


def images_per_second(batches) -> float:
    start, count = time.perf_counter(), 0
    for images, _ in batches:
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    root, description = data_root()
    index = load_index(root)
    print(f"{len(index)} images from {description}; {os.cpu_count()} CPU cores; batch size {args.batch_size}\n")
    images_per_second(make_dataset(index.head(4), 64, 2, cache=False))  # warm-up: graph tracing, thread pools
    images_per_second(naive_batches(index.head(4), 64, 2))
    print("| image size | loader | cold epoch (img/s) | warm epoch (img/s) | warm vs naive |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        dataset = make_dataset(index, size, args.batch_size)
        cold, warm = images_per_second(dataset), images_per_second(dataset)
        naive = images_per_second(naive_batches(index, size, args.batch_size))
        print(f"| {size} | tf.data (parallel decode, cache) | {cold:.0f} | {warm:.0f} | {warm / naive:.0f}x |")
        print(f"| {size} | naive (pydicom per batch) | {naive:.0f} | {naive:.0f} | 1x |")
        print(f"| {size} | cold tf.data vs naive | {cold / naive:.1f}x | | |")


if __name__ == "__main__":
    main()
