"""A grid search that can rank something: every point of chapter 9's grid, trained at quick-mode *training* size
(not the tiny trial size the chapter executes), on several seeds.

    .venv/bin/python benchmarks/grid_search.py [--seeds 1 2 3] [--epochs N]

Each run is what a KerasTuner trial does: build and compile the model from the grid point's hyperparameters
(``utils.train.model_from_hyperparameters``, as ``utils.tuning.UNetHyperModel`` does), ``fit`` for the configured
epochs on the training split, and take the best validation competition score over the epochs. The split and the
data are the same for every run; a seed sets the initial weights, the augmentation and the batch order.

The ranking of two configurations "exceeds the seed noise" when the difference of their means is larger than
the larger of their two standard deviations over seeds (sample standard deviation). Results are saved after every
run, and a second call continues where an interrupted one stopped (delete the JSON file to start over).

Writes ``benchmarks/results/grid_search.json`` and ``.md``; chapter 9 includes the table and trains the chosen
configuration.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
from timing import RESULTS, write_results  # noqa: E402

from utils.config import get_config  # noqa: E402
from utils.metrics import MONITOR  # noqa: E402
from utils.sample import VERSION  # noqa: E402
from utils.source import data_root  # noqa: E402
from utils.train import model_from_hyperparameters, prepare_data  # noqa: E402
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


def summarise(runs: list[dict], baseline: float) -> dict:
    """Mean and spread per configuration, the ranking, and whether the top of the ranking exceeds the noise."""
    by_point: dict[str, dict] = {}
    for run in runs:
        entry = by_point.setdefault(key(run["hyperparameters"]), {"hyperparameters": run["hyperparameters"],
                                                                   "scores": [], "seeds": []})
        entry["scores"].append(run["best_score"])
        entry["seeds"].append(run["seed"])
    rows = []
    for name, entry in by_point.items():
        scores = entry["scores"]
        spread = statistics.stdev(scores) if len(scores) > 1 else float("nan")
        rows.append({"configuration": name, **entry, "mean": statistics.mean(scores), "std": spread})
    rows.sort(key=lambda row: row["mean"], reverse=True)
    best, second = rows[0], rows[1]
    noise = max(best["std"], second["std"])
    return {
        "ranking": rows,
        "chosen": best["hyperparameters"],
        "gap_to_second": best["mean"] - second["mean"],
        "noise": noise,
        "best_beats_second_beyond_noise": best["mean"] - second["mean"] > noise,
        "best_above_baseline_beyond_noise": best["mean"] - baseline > best["std"],
        "all_empty_baseline": baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    config = get_config()
    epochs = args.epochs or config.num_epochs
    root, description = data_root()
    splits, train_data, validation_data = prepare_data(root, config)
    validation = splits[splits["split"] == "validation"]
    baseline = float(1 - validation["has_pneumothorax"].mean())
    saved = RESULTS / f"{NAME}.json"
    runs = json.loads(saved.read_text())["runs"] if saved.exists() else []
    done = {(key(run["hyperparameters"]), run["seed"]) for run in runs}
    for seed in args.seeds:
        for point in grid_points():
            if (key(point), seed) in done:
                continue
            keras.utils.set_random_seed(seed)
            model = model_from_hyperparameters(point, config.image_size)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                history = model.fit(train_data, validation_data=validation_data, epochs=epochs, verbose=0,
                                    shuffle=False).history
            runs.append({"hyperparameters": point, "seed": seed, "best_score": max(history[MONITOR]),
                         "scores_by_epoch": history[MONITOR], "seconds": time.perf_counter() - start})
            print(f"{key(point)}, seed {seed}: best {MONITOR} {runs[-1]['best_score']:.3f} "
                  f"({runs[-1]['seconds']:.0f} s)", flush=True)
            payload = {"runs": runs}
            RESULTS.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(payload, indent=2) + "\n")  # after every run: an interruption loses one

    result = summarise(runs, baseline)
    payload = {
        "description": (f"every point of chapter 9's grid trained at quick-mode training size ({config.image_size} px, "
                        f"{epochs} epochs, batch {config.batch_size}) on {description} (sample version {VERSION}); "
                        f"best validation competition score over the epochs; seeds {sorted(set(args.seeds))}"),
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "validation_images": len(validation), **result, "runs": runs,
    }
    table = [
        f"Every grid point trained {len(set(args.seeds))} times (seeds {', '.join(map(str, sorted(set(args.seeds))))}) "
        f"at {config.image_size} px for {epochs} epochs, {len(validation)} validation images; the all-empty baseline "
        f"scores {baseline:.3f} on them. Written by `benchmarks/grid_search.py` on {payload['device']}.",
        "",
        "| rank | configuration | validation score per seed | mean | standard deviation |",
        "|---|---|---|---|---|",
    ]
    for rank, row in enumerate(result["ranking"], 1):
        table.append(f"| {rank} | {row['configuration']} | {', '.join(f'{s:.3f}' for s in row['scores'])} | "
                     f"{row['mean']:.3f} | {row['std']:.3f} |")
    write_results(NAME, payload, table)


if __name__ == "__main__":
    main()
