"""Training throughput: the book's tf.data pipeline against the same images as in-memory tensors, in one run.

    .venv/bin/python benchmarks/training_throughput.py [--image-size 128] [--preset compact] [--epochs 3]

Both runs train the same model (same preset, same initial weights) for the same number of epochs; the
pipeline's cache is filled before timing, so the comparison is between a warm tf.data pipeline (with its
augmentation) and tensors already in memory (no augmentation). The table also puts the achieved arithmetic
rate -- 3x the forward convolution FLOPs per image (forward + two backward products), times images/s -- next
to what one large float32 matrix multiplication reaches on the same machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from utils.data import load_index, make_dataset  # noqa: E402
from utils.model import build_unet, conv_flops  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import compile_model  # noqa: E402


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    product = tf.function(lambda: tf.matmul(a, b))
    product().numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        product().numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def train_rate(dataset, num_images, preset, image_size, epochs, weights) -> float:
    """Images per second over ``epochs`` epochs of model.fit, after one traced warm-up step."""
    model = compile_model(build_unet(preset, image_size))
    model.set_weights(weights)
    model.fit(dataset.take(1), epochs=1, verbose=0)  # trace the training step
    start = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0)
    return num_images * epochs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--preset", default="compact")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    root, description = data_root()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(root)
    pipeline = make_dataset(index, args.image_size, args.batch_size, training=True)
    for _ in pipeline:  # fill the cache
        pass
    images, masks = zip(*make_dataset(index, args.image_size, args.batch_size).unbatch())
    in_memory = tf.data.Dataset.from_tensor_slices((tf.stack(images), tf.stack(masks))).batch(args.batch_size)
    weights = build_unet(args.preset, args.image_size).get_weights()
    pipeline_rate = train_rate(pipeline, len(index), args.preset, args.image_size, args.epochs, weights)
    memory_rate = train_rate(in_memory.cache(), len(index), args.preset, args.image_size, args.epochs, weights)
    training_gflop_per_image = 3 * conv_flops(build_unet(args.preset, args.image_size)) / 1e9
    peak = matmul_gflops()
    gpus = len(tf.config.list_physical_devices("GPU"))
    print(f"{len(index)} images from {description}; preset {args.preset}, {args.image_size} px, "
          f"batch {args.batch_size}, {args.epochs} timed epochs; {os.cpu_count()} CPU cores, {gpus} GPUs\n")
    print("| input | images/s | vs in-memory | achieved GFLOP/s | of matmul GFLOP/s |")
    print("|---|---|---|---|---|")
    for name, rate in (("tf.data pipeline (cached, augmented)", pipeline_rate), ("in-memory tensors", memory_rate)):
        achieved = rate * training_gflop_per_image
        print(f"| {name} | {rate:.1f} | {rate / memory_rate:.2f}x | {achieved:.1f} | {achieved / peak:.0%} |")
    print(f"| float32 matmul 2048x2048 | | | {peak:.1f} | 100% |")


if __name__ == "__main__":
    main()
