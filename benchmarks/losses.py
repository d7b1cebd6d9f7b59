"""Chapter 7's exercises 1 and 2, measured: its training with binary cross-entropy alone, and with Keras' pooled
Dice in place of the per-image Dice, against the chapter's loss, on several seeds.

    .venv/bin/python benchmarks/losses.py [--seeds 1 2 3]

Each run is one ``utils.train.train`` call of chapter 7's configuration (the compact U-Net, Adam 1e-3, quick mode;
the seed fixes the split, the initial weights and each epoch's order and augmentation), differing only in the loss:

- ``bce_dice``: the chapter's binary cross-entropy plus per-image soft Dice (``utils.losses.bce_dice_loss``);
- ``bce``: binary cross-entropy alone (exercise 1);
- ``bce + keras Dice``: binary cross-entropy plus ``keras.losses.Dice()``, whose default ``axis=None`` pools the
  whole batch into one Dice (exercise 2). It is added to ``utils.losses.LOSSES`` here, for this script only.

Each best checkpoint (the epoch with the lowest validation loss) is scored on the test split at threshold 0.5
without post-processing -- the competition score, Dice on the positive images, and the share of empty images
with a false alarm -- and the validation score of the chosen epoch is read from its log. Each other loss is
compared with ``bce_dice`` seed by seed (``timing.paired``).

Writes ``benchmarks/results/losses.json`` and ``.md``; chapter 7's solutions read them.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402
from timing import paired, provenance, write_results  # noqa: E402

from utils.config import get_config  # noqa: E402
from utils.data import make_dataset  # noqa: E402
from utils.evaluate import postprocess, predict  # noqa: E402
from utils.losses import LOSSES, bce_loss  # noqa: E402
from utils.metrics import MONITOR, dice_per_image  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import chosen_epoch, train  # noqa: E402


@keras.saving.register_keras_serializable(package="benchmarks")
def bce_pooled_dice_loss(y_true, y_pred):
    """Binary cross-entropy per image plus one Dice over the whole batch (``keras.losses.Dice()``, axis=None)."""
    return bce_loss(y_true, y_pred) + keras.losses.Dice()(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"))


ARMS = {"bce_dice": "bce_dice", "bce": "bce", "bce + keras Dice": "bce_pooled_dice"}
METRICS = ("validation score", "test score", "positive dice", "empty images with a false alarm")


def run_once(root: Path, seed: int, arm: str, work: Path) -> dict:
    """Train chapter 7's configuration with ``seed`` and ``arm``'s loss; score its best checkpoint on test."""
    config = dataclasses.replace(get_config("quick"), seed=seed)
    start = time.perf_counter()
    run_dir = work / f"{ARMS[arm]}-seed{seed}"
    run = train(root, run_dir, config, preset="compact", loss=ARMS[arm])
    chosen = chosen_epoch(run.history.history)
    best = keras.models.load_model(run_dir / "best.keras")
    test = run.splits[run.splits["split"] == "test"]
    probabilities, masks = predict(best, make_dataset(test, config.image_size, config.batch_size))
    predicted = np.stack([postprocess(p, 0.5, 0) for p in probabilities])
    scores = dice_per_image(masks, predicted).numpy()
    positive = masks.reshape(len(masks), -1).any(1)
    marked = predicted.reshape(len(predicted), -1).any(1)
    return {"seed": seed, "arm": arm, "loss": ARMS[arm], "chosen_epoch": chosen["epoch"] + 1,
            "failure": chosen["failure"], "validation score": float(chosen["score"]),
            "test score": float(scores.mean()), "positive dice": float(scores[positive].mean()),
            "empty images with a false alarm": float(marked[~positive].mean()),
            "test_images": int(len(masks)), "test_positive": int(positive.sum()),
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    LOSSES["bce_pooled_dice"] = bce_pooled_dice_loss
    root, description = data_root()
    origin = provenance()
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            for arm in ARMS:
                runs.append(run_once(root, seed, arm, Path(work)))
                r = runs[-1]
                print(f"seed {seed}, {arm}: " + ", ".join(f"{m} {r[m]:.3f}" for m in METRICS)
                      + f"; chosen epoch {r['chosen_epoch']}; {r['seconds']:.0f} s", flush=True)
    by_arm = {arm: [r for r in runs if r["arm"] == arm] for arm in ARMS}
    reference = "bce_dice"
    summary = {arm: {metric: paired({reference: [r[metric] for r in by_arm[reference]],
                                     arm: [r[metric] for r in by_arm[arm]]}) for metric in METRICS}
               for arm in ARMS if arm != reference}
    config = get_config("quick")
    payload = {"data": description, "preset": "compact", "image_size": config.image_size,
               "max_epochs": config.num_epochs, "batch_size": config.batch_size, "seeds": args.seeds,
               "monitor": MONITOR, "runs": runs, "summary": summary}
    table = [
        f"Chapter 7's training (compact U-Net, Adam 1e-3, {config.image_size} px, at most {config.num_epochs} "
        f"epochs, best checkpoint by validation loss) with three losses, on {len(args.seeds)} seeds (each fixes "
        f"the split, the initial weights and the data order), {description}. Test split of "
        f"{runs[0]['test_images']} images ({runs[0]['test_positive']} positive) for seed {runs[0]['seed']}, "
        "threshold 0.5, no post-processing. Mean +- sample standard deviation over seeds; the validation score "
        "is the chosen epoch's.",
        "",
        "| loss | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for arm, arm_runs in by_arm.items():
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in arm_runs]
            cells.append(f"{np.mean(values):.3f} +- {np.std(values, ddof=1):.3f}")
        table.append(f"| {arm} | " + " | ".join(cells) + " |")
    table += ["", f"Against `{reference}`, seed by seed (differences exceed the seed spread when their mean is "
              "larger than either side's standard deviation and all have the same sign):", ""]
    for arm, metrics in summary.items():
        verdicts = [f"{metric} {s['mean_difference']:+.3f} ({'exceeds' if s['exceeds_seed_spread'] else 'within'} "
                    "the seed spread)" for metric, s in metrics.items()]
        table.append(f"- {arm}: " + "; ".join(verdicts) + ".")
    flagged = [f"{r['arm']} seed {r['seed']}: {r['failure']}" for r in runs if r["failure"]]
    table += ["", f"Runs whose chosen epoch is a failure mode: {'; '.join(flagged) if flagged else 'none'}."]
    write_results("losses", payload, table, origin)
    print(f"total {sum(r['seconds'] for r in runs):.0f} s")


if __name__ == "__main__":
    main()
