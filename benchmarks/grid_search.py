"""A grid search that can rank something: every point of chapter 9's grid, trained at quick-mode *training* size
(not the tiny trial size the chapter executes), on several seeds.

    .venv/bin/python benchmarks/grid_search.py [--seeds 1 2 3] [--epochs N]

Each run is what a KerasTuner trial does (``utils.tuning.UNetHyperModel``): set the seed, build and compile the
model from the grid point's hyperparameters (``utils.train.model_from_hyperparameters``), and ``fit`` for the
configured epochs on the training split. The split and the validation data are the same for every run. Each run
builds its own training pipeline with its seed, and a callback tells the pipeline which epoch it is, so the seed
fixes the initial weights, the augmentation and the batch order: epoch e of a run sees the same data wherever the
run sits in the loop, and in a resumed call too.

A run is judged by the book's one rule (``utils.train.chosen_epoch``): the epoch with the lowest validation loss,
the epoch ``best.keras`` would keep, and its validation competition score. Not the best score of any epoch (an
epoch that predicts nothing scores the all-empty baseline), and not the validation loss itself (bce_dice and
focal_dice are different functions, so their losses cannot be compared). Configurations are ranked by the mean
of that score over seeds. A configuration whose chosen epoch, on any seed, predicts nothing or marks nearly every
image (``utils.metrics.failure_mode``) is flagged and is not chosen.

The ranking of two configurations "exceeds the seed noise" when the difference of their means is larger than
the larger of their two standard deviations over seeds (sample standard deviation). Results are saved after every
run, and a second call with the same settings continues where an interrupted one stopped; a saved file made under
other settings (epochs, image size, mode, batch, data, sample version) is refused, not merged.

Writes ``benchmarks/results/grid_search.json`` and ``.md``; chapter 9 includes the table and trains the chosen
configuration.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import RESULTS, provenance, write_results  # noqa: E402

from utils.config import get_config  # noqa: E402
from utils.data import make_dataset  # noqa: E402
from utils.metrics import MONITOR, PREDICTED_POSITIVE, RULE  # noqa: E402
from utils.sample import VERSION  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import chosen_epoch, model_from_hyperparameters, prepare_data  # noqa: E402
from utils.tuning import search_space  # noqa: E402

NAME = "grid_search"


def grid_points() -> list[dict]:
    """Every point of ``search_space()`` (chapter 9's grid), in KerasTuner's grid order."""
    space = search_space()
    names = [hp.name for hp in space.space]
    values = [getattr(hp, "values", None) or [hp.value] for hp in space.space]
    return [dict(zip(names, point)) for point in itertools.product(*values)]


def key(point: dict) -> str:
    return f"learning rate {point['learning_rate']:g}, {point['loss']}, width {point['base_filters']}, " \
           f"depth {point['depth']}"


def load_runs(saved: Path, settings: dict) -> list[dict]:
    """The runs saved in ``saved`` under the same ``settings``; a file made under other settings is refused."""
    if not saved.exists():
        return []
    try:
        payload = json.loads(saved.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"{saved} is not valid JSON ({error}); delete it to start the grid again") from None
    theirs = payload.get("settings")
    if theirs != settings:
        differ = sorted(k for k in set(settings) | set(theirs or {}) if (theirs or {}).get(k) != settings.get(k))
        raise SystemExit(
            f"{saved} holds runs made under other settings ({', '.join(differ) or 'none recorded'}: saved "
            f"{ {k: (theirs or {}).get(k) for k in differ} }, now { {k: settings.get(k) for k in differ} }); "
            "runs made under different settings cannot be ranked together. Delete the file to start over, or "
            "pass the arguments (and UNET_BOOK_MODE, SIIM_DATA_DIR) it was made with to continue it.")
    return payload.get("runs", [])


def one_run(point: dict, seed: int, train_index, validation_data, config, epochs: int) -> dict:
    """Train ``point`` with ``seed`` on a training pipeline of its own; judge it by ``chosen_epoch``."""
    keras.utils.set_random_seed(seed)  # the initial weights
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Its own pipeline, seeded by the run's seed: the order and augmentation of epoch e are a function of
    # (seed, e), whichever runs came before it.
    train_data = make_dataset(train_index, config.image_size, config.batch_size, training=True, seed=seed,
                              epoch=epoch)
    set_epoch = keras.callbacks.LambdaCallback(on_epoch_begin=lambda number, logs: epoch.assign(number))
    model = model_from_hyperparameters(point, config.image_size)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(train_data, validation_data=validation_data, epochs=epochs, verbose=0, shuffle=False,
                            callbacks=[set_epoch]).history
    seconds = time.perf_counter() - start
    chosen = chosen_epoch(history)
    return {
        "hyperparameters": point, "seed": seed, **{name: chosen[name] for name in
                                                   ("epoch", RULE, "score", "predicted_positive", "failure")},
        "by_epoch": {name: [float(v) for v in history[name]]
                     for name in ("loss", RULE, MONITOR, f"val_{PREDICTED_POSITIVE}")},
        "seconds": seconds,
    }


def summarise(runs: list[dict], baseline: float) -> dict:
    """Mean and spread per configuration, the ranking, the flags, and whether the choice exceeds the noise."""
    by_point: dict[str, dict] = {}
    for run in runs:
        entry = by_point.setdefault(key(run["hyperparameters"]), {"hyperparameters": run["hyperparameters"],
                                                                   "scores": [], "seeds": [], "failures": [],
                                                                   "seconds": []})
        entry["scores"].append(run["score"])
        entry["seeds"].append(run["seed"])
        entry["failures"].append(run["failure"])
        entry["seconds"].append(run["seconds"])
    rows = []
    for name, entry in by_point.items():
        scores = entry["scores"]
        spread = statistics.stdev(scores) if len(scores) > 1 else float("nan")
        flags = sorted(set(f for f in entry["failures"] if f))
        flag = "; ".join(f"{entry['failures'].count(f)} of {len(scores)} runs: {f}" for f in flags)
        rows.append({"configuration": name, **entry, "mean": statistics.mean(scores), "std": spread,
                     "flag": flag})
    rows.sort(key=lambda row: row["mean"], reverse=True)
    eligible = [row for row in rows if not row["flag"]]
    if not eligible:
        return {"ranking": rows, "chosen": None, "all_empty_baseline": baseline,
                "note": "every configuration has a run that predicts nothing or marks nearly every image"}
    best = eligible[0]
    result = {"ranking": rows, "chosen": best["hyperparameters"], "chosen_configuration": best["configuration"],
              "chosen_rank": rows.index(best) + 1, "all_empty_baseline": baseline,
              "best_above_baseline_beyond_noise": best["mean"] - baseline > best["std"]}
    if len(eligible) > 1:  # the runner-up is the next configuration that could have been chosen
        second = eligible[1]
        noise = max(best["std"], second["std"])
        result.update({"runner_up": second["configuration"], "gap_to_runner_up": best["mean"] - second["mean"],
                       "noise": noise, "best_beats_runner_up_beyond_noise": best["mean"] - second["mean"] > noise})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    config = get_config()
    epochs = args.epochs or config.num_epochs
    root, description = data_root()
    # The split (and any subsample) comes from config.seed, the same for every run; the pipelines per run do not.
    splits, _, validation_data = prepare_data(root, config)
    train_index = splits[splits["split"] == "train"]
    validation = splits[splits["split"] == "validation"]
    baseline = float(1 - validation["has_pneumothorax"].mean())
    settings = {"mode": config.mode, "epochs": epochs, "image_size": config.image_size,
                "batch_size": config.batch_size, "num_samples": config.num_samples, "split_seed": config.seed,
                "data": description, "sample_version": VERSION, "train_images": len(train_index),
                "validation_images": len(validation)}
    origin = provenance()  # at the start: the commit that ran, not the one checked out when it ends
    saved = RESULTS / f"{NAME}.json"
    runs = load_runs(saved, settings)
    done = {(key(run["hyperparameters"]), run["seed"]) for run in runs}
    for seed in args.seeds:
        for point in grid_points():
            if (key(point), seed) in done:
                continue
            runs.append(one_run(point, seed, train_index, validation_data, config, epochs))
            run = runs[-1]
            flag = f", {run['failure']}" if run["failure"] else ""
            print(f"{key(point)}, seed {seed}: epoch {run['epoch'] + 1} (lowest {RULE} {run[RULE]:.4f}) scores "
                  f"{run['score']:.3f}, predicted positive {run['predicted_positive']:.2f}{flag} "
                  f"({run['seconds']:.0f} s)", flush=True)
            RESULTS.mkdir(parents=True, exist_ok=True)
            # After every run: an interruption loses one.
            saved.write_text(json.dumps({"settings": settings, "runs": runs}, indent=2) + "\n")

    result = summarise(runs, baseline)
    seeds = sorted({run["seed"] for run in runs})
    payload = {
        "description": (f"every point of chapter 9's grid trained at quick-mode training size ({config.image_size} px, "
                        f"{epochs} epochs, batch {config.batch_size}) on {description} (sample version {VERSION}); "
                        f"each run judged by utils.train.chosen_epoch: the validation competition score at the "
                        f"epoch with the lowest {RULE}; configurations ranked by its mean over seeds {seeds}; a "
                        "configuration with a run that predicts nothing or marks nearly every image is flagged "
                        "and not chosen"),
        "rule": f"score at the epoch with the lowest {RULE} (utils.train.chosen_epoch)",
        "settings": settings, "device": origin["device"],
        "validation_images": len(validation), **result, "runs": runs,
    }
    table = [
        f"Every grid point trained {len(seeds)} time{'s' if len(seeds) > 1 else ''} "
        f"(seeds {', '.join(map(str, seeds))}) at {config.image_size} px "
        f"for {epochs} epochs, {len(train_index)} training and {len(validation)} validation images; the all-empty "
        f"baseline scores {baseline:.3f} on them. Each run is judged at its epoch with the lowest validation loss "
        f"(the model `best.keras` keeps), by its validation competition score there.",
        "",
        "| rank | configuration | score per seed | mean | standard deviation | flag | seconds per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for rank, row in enumerate(result["ranking"], 1):
        table.append(f"| {rank} | {row['configuration']} | {', '.join(f'{s:.3f}' for s in row['scores'])} | "
                     f"{row['mean']:.3f} | {row['std']:.3f} | {('**' + row['flag'] + '**') if row['flag'] else ''} "
                     f"| {statistics.mean(row['seconds']):.0f} |")
    table += ["", f"Chosen: {result.get('chosen_configuration', 'none (every configuration is flagged)')}"
              + (f" (rank {result['chosen_rank']}; flagged configurations are not chosen)."
                 if result.get("chosen") else ".")]
    write_results(NAME, payload, table, origin)


if __name__ == "__main__":
    main()
