"""Does the context block help? The compact U-Net trained with and without it, on several seeds, in quick mode.

    .venv/bin/python benchmarks/context_block.py [--seeds 1 2 3] [--epochs N]

Both arms are ``utils.train.train`` runs with the same data, sizes, loss and schedule (quick mode, the bundled
sample unless ``$SIIM_DATA_DIR`` holds the real data); the only difference is ``context=True`` on the "compact"
preset (a context block on the bottleneck, chapter 4). A seed sets the data split, the augmentation and the
initial weights, and is the same for both arms, so each seed gives a paired comparison. Each run's best
checkpoint (by the validation loss, as in chapter 7) is scored on the test split: the competition score
(threshold 0.5, no post-processing) and the Dice on positive images.

The difference of the means "exceeds the seed spread" when it is larger than the larger of the two arms'
standard deviations over seeds (sample standard deviation) *and* all paired differences have the same sign.

Writes ``benchmarks/results/context_block.json`` and ``.md``; chapter 5 includes the table.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
from timing import write_results  # noqa: E402

from utils.config import get_config  # noqa: E402
from utils.data import make_dataset  # noqa: E402
from utils.evaluate import predict  # noqa: E402
from utils.metrics import dice_per_image  # noqa: E402
from utils.model import get_unet_config  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import train  # noqa: E402

ARMS = {"without context block": False, "with context block": True}
METRICS = ("competition_score", "positive_dice")


def run_once(root: Path, seed: int, context: bool, num_epochs: int | None, work: Path) -> dict:
    """Train one arm with one seed; return its test-split scores, epochs run and seconds."""
    config = dataclasses.replace(get_config("quick"), seed=seed)
    if num_epochs:
        config = dataclasses.replace(config, num_epochs=num_epochs)
    start = time.perf_counter()
    run_dir = work / f"seed{seed}_context{int(context)}"
    run = train(root, run_dir, config, preset=get_unet_config("compact", context=context))
    best = keras.models.load_model(run_dir / "best.keras")
    test = run.splits[run.splits["split"] == "test"]
    probabilities, masks = predict(best, make_dataset(test, config.image_size, config.batch_size))
    per_image = dice_per_image(masks, probabilities > 0.5).numpy()
    positive = masks.reshape(len(masks), -1).max(axis=1) > 0
    return {"seed": seed, "context": context, "competition_score": float(per_image.mean()),
            "positive_dice": float(per_image[positive].mean()), "test_images": int(len(masks)),
            "test_positive": int(positive.sum()), "epochs": len(run.history.history["loss"]),
            "seconds": time.perf_counter() - start}


def summarise(runs: list[dict]) -> dict:
    """Mean and standard deviation per arm and metric, the paired differences, and the verdict per metric."""
    result = {}
    for metric in METRICS:
        arms = {name: [r[metric] for r in runs if r["context"] == flag] for name, flag in ARMS.items()}
        differences = [w[metric] - wo[metric] for w in runs if w["context"]
                       for wo in runs if not wo["context"] and wo["seed"] == w["seed"]]
        stds = {name: statistics.stdev(values) if len(values) > 1 else float("nan") for name, values in arms.items()}
        mean_difference = statistics.fmean(differences)
        same_sign = all(d > 0 for d in differences) or all(d < 0 for d in differences)
        result[metric] = {
            "mean": {name: statistics.fmean(values) for name, values in arms.items()},
            "std": stds,
            "paired_differences": differences,
            "mean_difference": mean_difference,
            "largest_std": max(stds.values()),
            "exceeds_seed_spread": bool(abs(mean_difference) > max(stds.values()) and same_sign),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None, help="default: quick mode's number of epochs")
    args = parser.parse_args(argv)
    root, description = data_root()
    sample_version = root / ".sample-version"
    version = sample_version.read_text().strip() if sample_version.exists() else None
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            for name, context in ARMS.items():
                runs.append(run_once(root, seed, context, args.epochs, Path(work)))
                r = runs[-1]
                print(f"seed {seed}, {name}: score {r['competition_score']:.3f}, positive Dice "
                      f"{r['positive_dice']:.3f}, {r['epochs']} epochs, {r['seconds']:.0f} s", flush=True)
    summary = summarise(runs)
    config = get_config("quick")
    epochs = args.epochs or config.num_epochs
    payload = {"data": description, "sample_version": version, "preset": "compact", "image_size": config.image_size,
               "max_epochs": epochs, "batch_size": config.batch_size, "seeds": args.seeds, "cpu_cores": os.cpu_count(),
               "runs": runs, "summary": summary}
    first = runs[0]
    table = [
        f"The compact U-Net with and without a context block on the bottleneck, {len(args.seeds)} seeds each "
        f"(paired: a seed fixes split, augmentation and initial weights for both); quick mode ({config.image_size} "
        f"px, at most {epochs} epochs, best checkpoint by validation loss); {description}"
        + (f" (sample version {version})" if version else "")
        + f"; scored on the test split ({first['test_positive']} positive of {first['test_images']} images for seed "
        f"{first['seed']}), threshold 0.5, no post-processing. Mean +- sample standard deviation over seeds.",
        "",
        "| metric | without context block | with context block | paired differences (with - without) "
        "| difference exceeds seed spread? |",
        "|---|---|---|---|---|",
    ]
    for metric in METRICS:
        s = summary[metric]
        cells = [f"{s['mean'][name]:.3f} +- {s['std'][name]:.3f}" for name in ARMS]
        differences = ", ".join(f"{d:+.3f}" for d in s["paired_differences"])
        verdict = "yes" if s["exceeds_seed_spread"] else "no"
        table.append(f"| {metric.replace('_', ' ')} | {cells[0]} | {cells[1]} | {differences} "
                     f"(mean {s['mean_difference']:+.3f}) | {verdict} |")
    write_results("context_block", payload, table)
    print(f"total {sum(r['seconds'] for r in runs):.0f} s")


if __name__ == "__main__":
    main()
