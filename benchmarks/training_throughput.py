"""Training throughput: the book's tf.data pipeline against the same images as in-memory tensors, interleaved.

    .venv/bin/python benchmarks/training_throughput.py [--image-size 96] [--preset compact] [--repeats 5]

Two models of the same preset start from the same weights. One trains on the warm pipeline (cache filled
beforehand, augmentation on), the other on tensors already in memory (no augmentation). They train one epoch
at a time, in turn (see ``timing.py``), and each side's best and median epoch are reported, the ratio taken
between bests. The table also puts the achieved arithmetic rate -- 3x the forward convolution FLOPs per image
(forward + two backward products), times images/s -- next to the best of several large float32 matrix
multiplications on the same machine. With a GPU, mixed precision and XLA are used as ``configure_device``
decides.

Writes ``benchmarks/results/training_throughput.json`` and ``.md``; chapter 7 includes the table.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import interleaved, summary, write_results  # noqa: E402

from utils.config import get_config  # noqa: E402
from utils.data import load_index, make_dataset  # noqa: E402
from utils.model import build_unet, conv_flops  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import compile_model, configure_device  # noqa: E402


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The best of ``repeats`` float32 (n x n) matrix products, in GFLOP/s."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    product = tf.function(lambda: tf.matmul(a, b))
    product().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=get_config("quick").image_size)
    parser.add_argument("--preset", default="compact")
    parser.add_argument("--batch-size", type=int, default=get_config("quick").batch_size)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    device = configure_device()
    source = data_root()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(source.path)
    pipeline = make_dataset(index, args.image_size, args.batch_size, training=True)
    for _ in pipeline:  # fill the cache
        pass
    images, masks = zip(*make_dataset(index, args.image_size, args.batch_size).unbatch())
    in_memory = tf.data.Dataset.from_tensor_slices((tf.stack(images), tf.stack(masks))).batch(args.batch_size).cache()
    weights = build_unet(args.preset, args.image_size).get_weights()

    def model_for(dataset) -> keras.Model:
        model = compile_model(build_unet(args.preset, args.image_size), jit_compile=device.jit_compile)
        model.set_weights(weights)
        model.fit(dataset.take(1), epochs=1, verbose=0)  # trace the training step
        return model

    models = {"pipeline": model_for(pipeline), "in_memory": model_for(in_memory)}
    datasets = {"pipeline": pipeline, "in_memory": in_memory}

    def epoch(name: str) -> int:
        models[name].fit(datasets[name], epochs=1, verbose=0)
        return len(index)

    rates = interleaved({name: (lambda name=name: epoch(name)) for name in models}, args.repeats)
    stats = {name: summary(values) for name, values in rates.items()}
    peak = matmul_gflops()
    gflop_per_image = 3 * conv_flops(build_unet(args.preset, args.image_size)) / 1e9
    memory = stats["in_memory"]["best"]
    table = [
        f"{len(index)} images from {source.description}; preset {args.preset}, {args.image_size} px, batch "
        f"{args.batch_size}; {device.description}, {os.cpu_count()} CPU cores; mixed precision "
        f"{'on' if device.mixed_precision else 'off'}, XLA {'on' if device.jit_compile else 'off'}. One epoch per "
        f"run, {args.repeats} runs per side, interleaved; rates in images/s, ratios between bests.",
        "",
        "| input | best | median | slowest / best | best vs in-memory | achieved GFLOP/s (best) | of matmul |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("pipeline", "tf.data pipeline (cached, augmented)"), ("in_memory", "in-memory tensors")):
        s = stats[name]
        achieved = s["best"] * gflop_per_image
        table.append(f"| {label} | {s['best']:.1f} | {s['median']:.1f} | {s['spread']:.2f} | "
                     f"{s['best'] / memory:.2f}x | {achieved:.1f} | {achieved / peak:.0%} |")
    table.append(f"| float32 matmul 2048x2048 (best of 10) | | | | | {peak:.1f} | 100% |")
    payload = {"images": len(index), "preset": args.preset, "image_size": args.image_size,
               "batch_size": args.batch_size, "repeats": args.repeats, "device": device.description,
               "mixed_precision": device.mixed_precision, "jit_compile": device.jit_compile,
               "cpu_cores": os.cpu_count(), "matmul_gflops": peak, "gflop_per_image": gflop_per_image,
               "sides": {name: {**stats[name], "runs": rates[name], "vs_in_memory": stats[name]["best"] / memory}
                         for name in stats}}
    write_results("training_throughput", payload, table)


if __name__ == "__main__":
    main()
