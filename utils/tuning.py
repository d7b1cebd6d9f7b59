"""Hyperparameter search with KerasTuner: the model-building function, the search space, and a distributed
search's worker entry point.

    KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000 \
        python -m utils.tuning --directory runs/search --image-size 64 --epochs 3

(run once as the chief and once per worker with KERASTUNER_TUNER_ID=tuner0, tuner1, ...).
Each worker prints a line when it starts a trial and one when it ends it, with the
trial's ID and the wall-clock time; ``trial_times`` reads them back from the logs.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.engine.trial import TrialStatus

from utils.config import RunConfig, get_config
from utils.metrics import MONITOR, PREDICTED_POSITIVE, RULE, failure_mode
from utils.train import HYPERPARAMETERS, chosen_epoch, model_from_hyperparameters

if TYPE_CHECKING:
    import pandas as pd

# A trial is judged as the book judges every run (utils.train.chosen_epoch): at the epoch with the lowest
# validation loss, the epoch best.keras keeps, by its validation competition score there. Not the best score of any
# epoch (an epoch that predicts nothing scores the all-empty baseline), and not val_loss itself: the grid has two
# losses, and the values of two different functions cannot be compared.
OBJECTIVE = keras_tuner.Objective(f"{MONITOR}_at_lowest_{RULE}", direction="max")
# What else a trial records about its chosen epoch (trial.metrics), for trials_table.
CHOSEN_EPOCH = "chosen_epoch"  # 0-based, as Keras counts
CHOSEN_PREDICTED_POSITIVE = f"val_{PREDICTED_POSITIVE}"

# KerasTuner's GridSearchOracle cannot resume a search from its directory (keras-team/keras-tuner#1055; the fix,
# PR #1056, is not merged, and 1.4.8 is the newest release). This is the first release that could carry the fix:
# check on upgrade. tests/test_tuning.py fails when the installed release and this guard disagree.
GRID_RESUME_FIXED_IN = (1, 4, 9)


def search_space(base_filters: Sequence[int] = (16,), learning_rates: Sequence[float] = (1e-4, 1e-3, 1e-2),
                 depths: Sequence[int] = (4,), losses: Sequence[str] = ("bce_dice", "focal_dice")
                 ) -> keras_tuner.HyperParameters:
    """The grid as KerasTuner hyperparameters: Int with a step and Choice, so GridSearch can enumerate every value.

    A dimension given a single value is Fixed. The defaults make a 3 x 2 grid: the learning rate over two orders
    of magnitude, and the loss, at the widths and depth of the "compact" preset (16 filters doubling over 4 levels).
    """
    hp = keras_tuner.HyperParameters()
    for name, values in (("base_filters", base_filters), ("depth", depths)):
        if len(values) == 1:
            hp.Fixed(name, values[0])
        else:
            step = values[1] - values[0]
            if list(values) != list(range(values[0], values[-1] + 1, step)):
                raise ValueError(f"{name} values {values} must be evenly spaced for hp.Int; use a Choice instead")
            hp.Int(name, values[0], values[-1], step=step)
    for name, values in (("learning_rate", learning_rates), ("loss", losses)):
        if len(values) > 1:
            hp.Choice(name, list(values))
        else:
            hp.Fixed(name, values[0])
    return hp


def trial_metrics(history: dict) -> dict[str, float]:
    """What a trial reports to KerasTuner: ``OBJECTIVE`` (the validation score at the epoch with the lowest
    validation loss, ``utils.train.chosen_epoch``) and that epoch's number, val_loss and share of images predicted
    positive. ``history`` is ``History.history``. KerasTuner stores the values as floats (NaN: not logged)."""
    chosen = chosen_epoch(history)
    share = chosen["predicted_positive"]
    return {OBJECTIVE.name: chosen["score"], CHOSEN_EPOCH: float(chosen["epoch"]), RULE: chosen[RULE],
            CHOSEN_PREDICTED_POSITIVE: math.nan if share is None else share}


class UNetHyperModel(keras_tuner.HyperModel):
    """Builds and compiles a U-Net for one trial's hyperparameters (widths double per level from base_filters), and
    trains it so that every trial starts from the same seed and sees the same data, epoch by epoch.

    ``seed`` is set before each trial's model is built (its initial weights) and again before it trains.
    ``epoch`` is a ``tf.Variable`` that ``fit`` sets at the start of every epoch: build the training data with it,
    ``utils.train.prepare_data(root, config, epoch=hypermodel.epoch)``, and epoch e of every trial gets epoch e's
    order and augmentation, a function of the pipeline's seed and e alone (``utils.data.make_dataset``). A dataset
    built without it continues its stream from trial to trial, so each trial would see other data. Tuners that
    share one dataset must share its variable: pass the same ``epoch`` to each (``grid_search(..., epoch=)``).

    ``fit`` returns ``trial_metrics``: KerasTuner ranks the trials by ``OBJECTIVE``. KerasTuner's own per-trial
    checkpoint (``tuner.get_best_models``) cannot follow that objective, which is not logged per epoch, and keeps
    each trial's last epoch; the book trains the chosen hyperparameters again with ``utils.train`` instead.
    """

    def __init__(self, image_size: int, seed: int = 42, epoch: tf.Variable | None = None, jit_compile: bool = False):
        super().__init__(name="unet")
        self.image_size = image_size
        self.seed = seed
        self.jit_compile = jit_compile  # XLA, as utils.train uses it: pass configure_device().jit_compile
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False) if epoch is None else epoch

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The compiled U-Net for ``hp``'s base_filters, depth, loss and learning_rate, from ``seed``'s weights."""
        keras.utils.set_random_seed(self.seed)  # Keras draws the initial weights from the global seed
        values = {name: hp.get(name) for name in HYPERPARAMETERS}
        # What utils.train builds from the same values; the mixed-precision policy is configure_device's, global.
        return model_from_hyperparameters(values, self.image_size, self.jit_compile)

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs) -> dict[str, float]:
        """``model.fit(*args, **kwargs)`` from the trial's seed, with ``epoch`` set at each epoch's start; returns
        ``trial_metrics`` of its history."""
        keras.utils.set_random_seed(self.seed)
        self.epoch.assign(kwargs.get("initial_epoch", 0))
        set_epoch = keras.callbacks.LambdaCallback(on_epoch_begin=lambda number, logs: self.epoch.assign(number))
        kwargs["callbacks"] = [set_epoch, *(kwargs.get("callbacks") or [])]
        history = model.fit(*args, **kwargs)
        return trial_metrics(history.history)


class ResumableGridSearchOracle(keras_tuner.oracles.GridSearchOracle):
    """GridSearchOracle that can continue a search reloaded from its directory.

    KerasTuner 1.4.8 does not save the grid oracle's ordering of trials, so a reloaded grid search crashes with a
    KeyError or stops early (keras-team/keras-tuner#1055, open). After reloading, this rebuilds that ordering from
    the trials on disk: finished trials are not run again, and an interrupted one is run again from its start.
    ``grid_search`` uses it for KerasTuner releases below ``GRID_RESUME_FIXED_IN``.
    """

    def reload(self) -> None:
        """Reload the trials and state from the project directory, then rebuild the walk through the grid."""
        super().reload()
        from keras_tuner.src.tuners.gridsearch import LinkedList  # no public import path

        by_grid_position = functools.cmp_to_key(
            lambda a, b: self._compare(a.hyperparameters.values, b.hyperparameters.values))
        ordered = sorted(self.trials.values(), key=by_grid_position)
        self._ordered_ids = LinkedList()
        for trial in ordered:
            self._ordered_ids.insert(trial.trial_id)
        # As end_trial does: every ended trial, failed ones too, leads on to its next grid point.
        self._populate_next = [t.trial_id for t in ordered if t.status != TrialStatus.RUNNING]


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: ``"1.4.8"`` gives ``(1, 4, 8)``, ``"1.5.0rc1"`` gives ``(1, 5, 0)``."""
    match = re.match(r"\d+(\.\d+)*", version)
    if match is None:
        raise ValueError(f"version {version!r} does not start with a number; expected a string such as '1.4.8'")
    return tuple(int(part) for part in match.group().split("."))


def grid_resume_fixed(version: str | None = None) -> bool:
    """Whether KerasTuner ``version`` (default: the installed one) is at or above ``GRID_RESUME_FIXED_IN``, so that
    its own GridSearchOracle resumes a search and ``ResumableGridSearchOracle`` is not needed."""
    return version_tuple(version or keras_tuner.__version__) >= GRID_RESUME_FIXED_IN


def grid_search(image_size: int, directory: str | os.PathLike, project_name: str = "grid",
                max_trials: int | None = None, hyperparameters: keras_tuner.HyperParameters | None = None,
                seed: int = 42, epoch: tf.Variable | None = None, jit_compile: bool = False,
                **kwargs) -> keras_tuner.Tuner:
    """A grid-search tuner over ``hyperparameters`` (default: ``search_space()``) that resumes from ``directory``.

    The oracle is KerasTuner's GridSearchOracle where ``grid_resume_fixed()``, else ``ResumableGridSearchOracle``.
    The hypermodel is ``UNetHyperModel(image_size, seed, epoch, jit_compile)``: build the training data with
    ``tuner.hypermodel.epoch`` (or pass the ``epoch`` it was built with). Call ``utils.train.configure_device``
    first and pass its ``jit_compile``, so that the trials run with the numerics (mixed precision, XLA) of the
    training that follows. ``kwargs`` go to ``keras_tuner.Tuner`` (for example ``distribution_strategy``).
    """
    oracle_class = keras_tuner.oracles.GridSearchOracle if grid_resume_fixed() else ResumableGridSearchOracle
    oracle = oracle_class(objective=OBJECTIVE, max_trials=max_trials, seed=seed,
                          hyperparameters=hyperparameters or search_space())
    return keras_tuner.Tuner(oracle=oracle, hypermodel=UNetHyperModel(image_size, seed, epoch, jit_compile),
                             directory=directory,
                             project_name=project_name, overwrite=False, **kwargs)


def tuning_config(config: RunConfig) -> RunConfig:
    """The run configuration of one trial: the search sizes of ``config`` (smaller and shorter than training)."""
    return dataclasses.replace(config, image_size=config.search_image_size, num_epochs=config.search_epochs,
                               num_samples=config.search_samples)


TABLE_COLUMNS = ("score", "epoch", RULE, "predicted_positive", "flag")


def trials_table(tuner: keras_tuner.Tuner) -> pd.DataFrame:
    """One row per completed trial, best first: its hyperparameters, its score (``OBJECTIVE``: the validation score
    at the epoch with the lowest validation loss), that epoch (1-based), its val_loss and share of images predicted
    positive, and a flag when it "predicts nothing" or "marks nearly every image" (``metrics.failure_mode``).

    With no completed trial, an empty table with the same columns.
    """
    import pandas as pd

    def recorded(trial, name: str) -> float:
        value = trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None
        return math.nan if value is None else float(value)

    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.status != TrialStatus.COMPLETED:
            continue
        share = recorded(trial, CHOSEN_PREDICTED_POSITIVE)
        rows.append({"trial": trial.trial_id, **trial.hyperparameters.values, "score": trial.score,
                     "epoch": recorded(trial, CHOSEN_EPOCH) + 1, RULE: recorded(trial, RULE),
                     "predicted_positive": share, "flag": "" if math.isnan(share) else failure_mode(share)})
    if not rows:
        names = [hp.name for hp in tuner.oracle.get_space().space]
        return pd.DataFrame(columns=["trial", *names, *TABLE_COLUMNS])
    table = pd.DataFrame(rows)
    if (table["epoch"].dropna() % 1 == 0).all():  # not averaged over executions: whole numbers, <NA> if missing
        table["epoch"] = table["epoch"].astype("Int64")
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


# What a worker of main() prints for each trial: "[tuner0] trial 00 started at
# 1700000000.123", then "[tuner0] trial 00 ended at 1700000042.456 (COMPLETED)".
# Times are time.time(), seconds since the epoch: comparable between the processes of
# one machine (on several machines, only as far as their clocks agree).
TRIAL_LINE = re.compile(r"^\[(?P<role>[^\]]+)\] trial (?P<trial>\S+) "
                        r"(?P<event>started|ended) at (?P<time>\d+(\.\d+)?)"
                        r"( \((?P<status>\w+)\))?$")


def _report_trials(tuner: keras_tuner.Tuner, role: str) -> None:
    """Have ``tuner`` print a ``TRIAL_LINE`` as each trial starts and after it ended."""
    begin, end = tuner.on_trial_begin, tuner.on_trial_end

    def on_trial_begin(trial) -> None:
        now = time.time()
        print(f"[{role}] trial {trial.trial_id} started at {now:.3f}", flush=True)
        begin(trial)

    def on_trial_end(trial) -> None:
        end(trial)  # KerasTuner's: reports the trial to the oracle (the chief), saves
        now = time.time()
        print(f"[{role}] trial {trial.trial_id} ended at {now:.3f} ({trial.status})",
              flush=True)

    tuner.on_trial_begin, tuner.on_trial_end = on_trial_begin, on_trial_end


def trial_times(lines: Iterable[str]) -> pd.DataFrame:
    """The trials that ``main``'s workers logged, read from their logs' lines.

    One row per (worker, trial) started, in the order started: ``worker`` (its
    KERASTUNER_TUNER_ID), ``trial`` (the trial ID), ``started`` and ``ended``
    (``time.time()`` seconds; NaN when no end was logged, as for a worker stopped
    during the trial) and ``status`` (KerasTuner's, e.g. "COMPLETED"; "" when not
    ended). Other lines are skipped.
    """
    import pandas as pd

    rows: dict[tuple[str, str], dict] = {}
    for line in lines:
        match = TRIAL_LINE.match(line.strip())
        if match is None:
            continue
        key = (match["role"], match["trial"])
        if match["event"] == "started":
            started = float(match["time"])
            rows[key] = {"worker": key[0], "trial": key[1], "started": started,
                         "ended": math.nan, "status": ""}
        elif key in rows:
            rows[key].update(ended=float(match["time"]), status=match["status"] or "")
    columns = ["worker", "trial", "started", "ended", "status"]
    table = pd.DataFrame(list(rows.values()), columns=columns)
    return table.sort_values("started", kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    """One process of a distributed grid search: chief or worker (KERASTUNER_TUNER_ID).

    A worker prints a ``TRIAL_LINE`` when it starts and when it ends each trial (the
    trial's ID and the wall-clock time); every process prints "[ROLE] search finished".
    """
    from utils.source import data_root
    from utils.train import prepare_data

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True)
    parser.add_argument("--project-name", default="grid")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-trials", type=int, default=None)
    args = parser.parse_args(argv)
    config = tuning_config(get_config())
    config = dataclasses.replace(config, image_size=args.image_size or config.image_size,
                                 num_epochs=args.epochs or config.num_epochs)
    role = os.environ.get("KERASTUNER_TUNER_ID", "(not distributed)")
    tuner = grid_search(config.image_size, args.directory, args.project_name, args.max_trials, seed=config.seed)
    _report_trials(tuner, role)  # the chief trains no trial: it serves the oracle
    _, train_data, validation_data = prepare_data(data_root().path, config, epoch=tuner.hypermodel.epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.search(train_data, validation_data=validation_data, epochs=config.num_epochs, verbose=0)
    print(f"[{role}] search finished", flush=True)


if __name__ == "__main__":
    main()
