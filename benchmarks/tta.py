"""Does flip test-time augmentation help, beyond the seed spread? Chapter 7's training on several seeds, each
evaluated with and without TTA.

    .venv/bin/python benchmarks/tta.py [--seeds 1 2 3]

Each seed is one ``utils.train.train`` run of chapter 7's configuration (the compact U-Net, bce_dice, Adam 1e-3,
quick mode; the seed fixes the split, the initial weights and each epoch's order and augmentation). Its best
checkpoint (``best.keras``, the epoch with the lowest validation loss) is evaluated as chapter 7 does: for no TTA
and for flip TTA (``utils.evaluate.predict(flip=...)``), the component rule is tuned on the validation split
(``tune_tta``), and the test split is scored with each side's own tuned rule. The comparison is paired: the same
model, split and rule-tuning procedure, only the flip differs. TTA's gain "exceeds the seed spread" when the mean
of the paired differences is larger than the larger of the two sides' standard deviations over seeds (sample
standard deviation) *and* every paired difference has the same sign.

Writes ``benchmarks/results/tta.json`` and ``.md``; chapter 7 includes the table.
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
from timing import paired, provenance, write_results  # noqa: E402

from utils.config import get_config  # noqa: E402
from utils.data import make_dataset  # noqa: E402
from utils.evaluate import postprocess, predict, tune_tta  # noqa: E402
from utils.metrics import dice_per_image  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import chosen_epoch, train  # noqa: E402

SIDES = {"no TTA": False, "flip TTA": True}


def run_once(root: Path, seed: int, work: Path) -> dict:
    """Train chapter 7's configuration with ``seed``; score its best checkpoint with and without flip TTA."""
    config = dataclasses.replace(get_config("quick"), seed=seed)
    start = time.perf_counter()
    run = train(root, work / f"seed{seed}", config, preset="compact", loss="bce_dice")
    chosen = chosen_epoch(run.history.history)
    best = keras.models.load_model(work / f"seed{seed}" / "best.keras")
    splits = run.splits
    validation = make_dataset(splits[splits["split"] == "validation"], config.image_size, config.batch_size)
    test = make_dataset(splits[splits["split"] == "test"], config.image_size, config.batch_size)
    tuned = tune_tta(best, validation).set_index("flip")
    result = {"seed": seed, "chosen_epoch": chosen["epoch"] + 1, "failure": chosen["failure"],
              "chosen_on_validation": "flip TTA" if bool(tuned.index[0]) else "no TTA"}  # tune_tta: best first
    for name, flip in SIDES.items():
        probabilities, masks = predict(best, test, flip=flip)
        rule = tuned.loc[flip]
        predicted = np.stack([postprocess(p, rule["threshold"], int(rule["min_component_area"]))
                              for p in probabilities])
        result[name] = {"validation": float(rule["score"]), "threshold": float(rule["threshold"]),
                        "min_component_area": int(rule["min_component_area"]),
                        "test": float(dice_per_image(masks, predicted).numpy().mean())}
    result.update(test_images=int(len(masks)), seconds=time.perf_counter() - start)
    return result


def summarise(runs: list[dict]) -> dict:
    """Per split: each side's mean and spread over seeds, the paired differences (flip - none), the verdict."""
    return {split: paired({name: [r[name][split] for r in runs] for name in SIDES})
            for split in ("validation", "test")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    root, description = data_root()
    origin = provenance()
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            runs.append(run_once(root, seed, Path(work)))
            r = runs[-1]
            print(f"seed {seed}: test {r['no TTA']['test']:.3f} without TTA, {r['flip TTA']['test']:.3f} with; "
                  f"validation chose {r['chosen_on_validation']}; {r['seconds']:.0f} s", flush=True)
    summary = summarise(runs)
    config = get_config("quick")
    payload = {"data": description, "preset": "compact", "loss": "bce_dice", "image_size": config.image_size,
               "max_epochs": config.num_epochs, "batch_size": config.batch_size, "seeds": args.seeds,
               "runs": runs, "summary": summary}
    table = [
        f"Chapter 7's training (compact U-Net, bce_dice, {config.image_size} px, at most {config.num_epochs} epochs, "
        f"best checkpoint by validation loss) on {len(args.seeds)} seeds (each fixes the split, the initial weights "
        f"and the data order), {description}. Each model is scored without and with flip TTA, each side with the "
        "component rule tuned on validation for it (`evaluate.tune_tta`); test split of "
        f"{runs[0]['test_images']} images for seed {runs[0]['seed']}. Mean +- sample standard deviation over seeds.",
        "",
        "| split | no TTA | flip TTA | paired differences (flip - none) | difference exceeds seed spread? |",
        "|---|---|---|---|---|",
    ]
    for split in ("validation", "test"):
        s = summary[split]
        cells = [f"{s['mean'][name]:.3f} +- {s['std'][name]:.3f}" for name in SIDES]
        differences = ", ".join(f"{d:+.3f}" for d in s["paired_differences"])
        table.append(f"| {split} | {cells[0]} | {cells[1]} | {differences} (mean {s['mean_difference']:+.3f}) | "
                     f"{'yes' if s['exceeds_seed_spread'] else 'no'} |")
    chose = [f"seed {r['seed']}: {r['chosen_on_validation']}" for r in runs]
    flagged = [f"seed {r['seed']}: {r['failure']}" for r in runs if r["failure"]]
    table += ["", f"Chosen on validation: {'; '.join(chose)}. Runs whose chosen epoch is a failure mode: "
              f"{'; '.join(flagged) if flagged else 'none'}."]
    write_results("tta", payload, table, origin)
    print(f"total {sum(r['seconds'] for r in runs):.0f} s")


if __name__ == "__main__":
    main()
