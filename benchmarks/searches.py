"""Chapter 10's exercises 1 and 2, run: Hyperband with ``max_epochs=6`` and ``factor=3``, and the grid-versus-random
comparison repeated on several seeds, both at the chapter's trial sizes.

    .venv/bin/python benchmarks/searches.py [--seeds 1 2 3]

Both use chapter 10's data and trials: quick mode's search configuration (``tuning.tuning_config``) cut to 32 px,
two epochs and 80 images, as the chapter's ``mechanics``, one shared training pipeline whose epoch variable every
trial sets. And its spaces: the grid of two first-level widths (8, 16) and two learning rates (1e-3, 1e-2), and the
random space of widths 8 to 16 in steps of 4 and learning rates drawn log-uniformly between 1e-3 and 1e-2. The
result file records the sizes and both spaces; the chapter checks that they are its own.

- Exercise 1: ``keras_tuner.Hyperband(..., max_epochs=6, factor=3, seed=42)`` over the random space searches
  once. Every trial's bracket, round, the trial it continues, and its ``tuner/initial_epoch`` and
  ``tuner/epochs`` are recorded, and a callback counts the epochs each ``fit`` really trained.
- Exercise 2: for each seed, the grid and a random search with as many trials, both tuners and
  ``keras.utils.set_random_seed`` given that seed (which sets every trial's initial weights). Each trial's
  hyperparameters, score and flag are recorded; the chapter ranks them with its own rule.

Writes ``benchmarks/results/searches.json`` and ``.md``; chapter 10's solutions read them.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import provenance, write_results  # noqa: E402

from utils import tuning  # noqa: E402
from utils.config import get_config  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import prepare_data  # noqa: E402

EPOCHS_PER_FIT: list[int] = []  # module level: KerasTuner gives each trial a deep copy of the callbacks


class CountEpochs(keras.callbacks.Callback):
    """Counts the epochs each ``fit`` trains, in the order the fits run."""

    def on_train_begin(self, logs=None):
        EPOCHS_PER_FIT.append(0)

    def on_epoch_end(self, epoch, logs=None):
        EPOCHS_PER_FIT[-1] += 1


def mechanics_config():
    """Chapter 10's trial sizes."""
    return dataclasses.replace(tuning.tuning_config(get_config("quick")), image_size=32, num_epochs=2,
                               num_samples=80)


def grid_space() -> keras_tuner.HyperParameters:
    return tuning.search_space(base_filters=(8, 16), learning_rates=(1e-3, 1e-2), depths=(3,), losses=("bce_dice",))


def random_space() -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Int("base_filters", 8, 16, step=4)
    hp.Fixed("depth", 3)
    hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")
    hp.Fixed("loss", "bce_dice")
    return hp


def search(tuner: keras_tuner.Tuner, data, epochs: int) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.search(data[0], validation_data=data[1], epochs=epochs, verbose=0, callbacks=[CountEpochs()])
    return time.perf_counter() - start


def trial_rows(tuner: keras_tuner.Tuner) -> list[dict]:
    table = tuning.trials_table(tuner)
    return [{key: (None if isinstance(value, float) and math.isnan(value) else value)
             for key, value in row.items()} for row in table.astype(object).to_dict("records")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    origin = provenance()
    mechanics = mechanics_config()
    root, description = data_root()
    keras.utils.set_random_seed(mechanics.seed)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    _, *data = prepare_data(root, mechanics, epoch=epoch)
    with tempfile.TemporaryDirectory() as work:
        hyperband = keras_tuner.Hyperband(
            tuning.UNetHyperModel(mechanics.image_size, seed=mechanics.seed, epoch=epoch),
            objective=tuning.OBJECTIVE, max_epochs=6, factor=3, hyperparameters=random_space(), directory=work,
            project_name="hyperband", seed=mechanics.seed)
        seconds = search(hyperband, data, mechanics.num_epochs)
        trials = sorted(hyperband.oracle.trials.values(), key=lambda trial: trial.trial_id)
        schedule = [{"trial": trial.trial_id, "bracket": trial.hyperparameters.values["tuner/bracket"],
                     "round": trial.hyperparameters.values["tuner/round"],
                     "continues": trial.hyperparameters.values.get("tuner/trial_id"),
                     "from epoch": trial.hyperparameters.values["tuner/initial_epoch"],
                     "to epoch": trial.hyperparameters.values["tuner/epochs"], "status": trial.status}
                    for trial in trials]
        hyperband_result = {"max_epochs": 6, "factor": 3, "seed": mechanics.seed, "trials": schedule,
                            "epochs_per_fit": list(EPOCHS_PER_FIT), "seconds": seconds}
        print(f"Hyperband: {len(schedule)} trials, {sum(EPOCHS_PER_FIT)} epochs trained, {seconds:.0f} s",
              flush=True)
        repeats = []
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            grid = tuning.grid_search(mechanics.image_size, work, project_name=f"grid-{seed}",
                                      hyperparameters=grid_space(), seed=seed, epoch=epoch)
            grid_seconds = search(grid, data, mechanics.num_epochs)
            grid_trials = trial_rows(grid)
            keras.utils.set_random_seed(seed)
            random = keras_tuner.RandomSearch(
                tuning.UNetHyperModel(mechanics.image_size, seed=seed, epoch=epoch), objective=tuning.OBJECTIVE,
                hyperparameters=random_space(), max_trials=len(grid_trials), directory=work,
                project_name=f"random-{seed}", seed=seed)
            random_seconds = search(random, data, mechanics.num_epochs)
            repeats.append({"seed": seed, "grid": grid_trials, "random": trial_rows(random),
                            "seconds": {"grid": grid_seconds, "random": random_seconds}})
            best = {name: max((t["score"] for t in repeats[-1][name] if not t["flag"]), default=None)
                    for name in ("grid", "random")}
            print(f"seed {seed}: best unflagged score {best}; {grid_seconds:.0f} + {random_seconds:.0f} s",
                  flush=True)
    payload = {"data": description, "image_size": mechanics.image_size, "num_epochs": mechanics.num_epochs,
               "num_samples": mechanics.num_samples, "data_seed": mechanics.seed,
               "grid_space": grid_space().get_config(), "random_space": random_space().get_config(),
               "hyperband": hyperband_result, "repeats": repeats}
    table = [
        f"Chapter 10's searches at its trial sizes ({mechanics.image_size} px, {mechanics.num_epochs} epochs per "
        f"grid or random trial, {mechanics.num_samples} images of {description}).",
        "",
        f"Exercise 1, Hyperband (max_epochs=6, factor=3, seed {mechanics.seed}): {len(schedule)} trials started, "
        f"{sum(1 for row in schedule if row['continues'] is None)} configurations, "
        f"{sum(row['to epoch'] - row['from epoch'] for row in schedule)} epochs scheduled, "
        f"{sum(hyperband_result['epochs_per_fit'])} trained (counted), in {seconds:.0f} s.",
        "",
        "Exercise 2, the grid and random search with as many trials, on each seed: the best score of the trials "
        "not flagged (the chapter then applies its rule against the all-empty baseline), the trials flagged, and "
        "the distinct learning rates tried.",
        "",
        "| seed | grid best | random best | grid flagged | random flagged | grid learning rates "
        "| random learning rates |",
        "|---|---|---|---|---|---|---|",
    ]
    for repeat in repeats:
        cells = []
        for name in ("grid", "random"):
            scores = [t["score"] for t in repeat[name] if not t["flag"]]
            cells.append(f"{max(scores):.3f}" if scores else "none")
        cells += [str(sum(1 for t in repeat[name] if t["flag"])) for name in ("grid", "random")]
        cells += [str(len({t["learning_rate"] for t in repeat[name]})) for name in ("grid", "random")]
        table.append(f"| {repeat['seed']} | " + " | ".join(cells) + " |")
    write_results("searches", payload, table, origin)


if __name__ == "__main__":
    main()
