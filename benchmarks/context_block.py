"""Does the context block help? The compact U-Net trained with and without it, on several seeds, in quick mode.

    .venv/bin/python benchmarks/context_block.py [--seeds 1 2 3] [--epochs N]

Both arms are ``utils.train.train`` runs with the same data, sizes, loss and schedule (quick mode, the bundled
sample unless ``$SIIM_DATA_DIR`` holds the real data); the only difference is ``context=True`` on the "compact"
preset (a context block on the bottleneck, chapter 4). Each seed gives a paired comparison: the seed sets the
data split and each epoch's order and augmentation, the same for both arms, and the arm with the block starts
from the other arm's initial weights in every layer the two share, copied by layer name (``SharedStart``, which
checks the copy), so only the block's own gate draws its own. Each run's best checkpoint (``best.keras``, the
epoch with the lowest validation loss, the book's rule, ``utils.train.chosen_epoch``) is scored on the test split:
the competition score (threshold 0.5, no post-processing) and the Dice on positive images; a run whose chosen
epoch predicts nothing or marks nearly every image is flagged.

The difference of the means "exceeds the seed spread" when it is larger than the larger of the two arms'
standard deviations over seeds (sample standard deviation) *and* all paired differences have the same sign.

Writes ``benchmarks/results/context_block.json`` and ``.md``; chapter 5 includes the table.
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
from utils.evaluate import predict  # noqa: E402
from utils.metrics import dice_per_image  # noqa: E402
from utils.model import get_unet_config  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import chosen_epoch, train  # noqa: E402

ARMS = {"without context block": False, "with context block": True}
METRICS = ("competition_score", "positive_dice")


class SharedStart(keras.callbacks.Callback):
    """Pairs two arms' initial weights. With an empty ``store``, records every layer's weights, by layer name, as
    training begins; with a filled one, sets them in every layer of the same name, checks that they were set, and
    lists the layers that keep their own (``own``). A layer the first arm had and this one lacks is an error."""

    def __init__(self, store: dict):
        super().__init__()
        self.store, self.copied, self.own = store, [], []

    def on_train_begin(self, logs=None):
        layers = {layer.name: layer for layer in self.model.layers if layer.weights}
        if not self.store:
            self.store.update({name: layer.get_weights() for name, layer in layers.items()})
            return
        if missing := sorted(set(self.store) - set(layers)):
            raise ValueError(f"the second arm lacks layers of the first: {missing}")
        for name, layer in layers.items():
            if name in self.store:
                layer.set_weights(self.store[name])
                assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), self.store[name])), name
                self.copied.append(name)
            else:
                self.own.append(name)


def run_once(root: Path, seed: int, context: bool, num_epochs: int | None, work: Path, start_from: dict) -> dict:
    """Train one arm with one seed, from ``start_from``'s weights where the layers are shared (``SharedStart``);
    return its test-split scores, its chosen epoch, epochs run and seconds."""
    config = dataclasses.replace(get_config("quick"), seed=seed)
    if num_epochs:
        config = dataclasses.replace(config, num_epochs=num_epochs)
    start = time.perf_counter()
    run_dir = work / f"seed{seed}_context{int(context)}"
    shared = SharedStart(start_from)
    run = train(root, run_dir, config, preset=get_unet_config("compact", context=context), extra_callbacks=[shared])
    chosen = chosen_epoch(run.history.history)
    best = keras.models.load_model(run_dir / "best.keras")
    test = run.splits[run.splits["split"] == "test"]
    probabilities, masks = predict(best, make_dataset(test, config.image_size, config.batch_size))
    per_image = dice_per_image(masks, probabilities > 0.5).numpy()
    positive = masks.reshape(len(masks), -1).max(axis=1) > 0
    return {"seed": seed, "context": context, "competition_score": float(per_image.mean()),
            "positive_dice": float(per_image[positive].mean()), "test_images": int(len(masks)),
            "test_positive": int(positive.sum()), "epochs": len(run.history.history["loss"]),
            "chosen_epoch": chosen["epoch"] + 1, "failure": chosen["failure"],
            "layers_from_other_arm": len(shared.copied), "own_layers": shared.own,
            "seconds": time.perf_counter() - start}


def summarise(runs: list[dict]) -> dict:
    """Mean and standard deviation per arm and metric, the paired differences, and the verdict per metric."""
    by_seed = {(r["seed"], r["context"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    return {metric: paired({name: [by_seed[seed, flag][metric] for seed in seeds] for name, flag in ARMS.items()})
            for metric in METRICS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None, help="default: quick mode's number of epochs")
    args = parser.parse_args(argv)
    root, description = data_root()
    sample_version = root / ".sample-version"
    version = sample_version.read_text().strip() if sample_version.exists() else None
    origin = provenance()
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            start_from: dict = {}  # filled by the first arm, read by the second
            for name, context in ARMS.items():
                runs.append(run_once(root, seed, context, args.epochs, Path(work), start_from))
                r = runs[-1]
                print(f"seed {seed}, {name}: score {r['competition_score']:.3f}, positive Dice "
                      f"{r['positive_dice']:.3f}, chosen epoch {r['chosen_epoch']} of {r['epochs']}"
                      f"{', ' + r['failure'] if r['failure'] else ''}, {r['seconds']:.0f} s", flush=True)
    summary = summarise(runs)
    config = get_config("quick")
    epochs = args.epochs or config.num_epochs
    payload = {"data": description, "sample_version": version, "preset": "compact", "image_size": config.image_size,
               "max_epochs": epochs, "batch_size": config.batch_size, "seeds": args.seeds, "cpu_cores": os.cpu_count(),
               "pairing": "same split, same (seed, epoch) data; shared layers start from the same weights, copied by "
                          "layer name", "runs": runs, "summary": summary}
    first = runs[0]
    table = [
        f"The compact U-Net with and without a context block on the bottleneck, {len(args.seeds)} seeds each "
        f"(paired: a seed fixes the split and each epoch's order and augmentation for both, and the arm with the block "
        f"starts from the other's initial weights in the {runs[1]['layers_from_other_arm']} layers they share; only "
        f"{', '.join(runs[1]['own_layers'])} draws its own); quick mode ({config.image_size} "
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
    flagged = [f"seed {r['seed']} {'with' if r['context'] else 'without'}: {r['failure']}" for r in runs
               if r["failure"]]
    table += ["", f"Runs whose chosen epoch is a failure mode: {'; '.join(flagged) if flagged else 'none'}."]
    write_results("context_block", payload, table, origin)
    print(f"total {sum(r['seconds'] for r in runs):.0f} s")


if __name__ == "__main__":
    main()
