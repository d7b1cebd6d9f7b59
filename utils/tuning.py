"""Hyperparameter search with KerasTuner: the model-building function, the search space, and a distributed
search's worker entry point.

    KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000 \
        python -m utils.tuning --directory runs/search --image-size 64 --epochs 3

(run once as the chief and once per worker with KERASTUNER_TUNER_ID=tuner0, tuner1, ...).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from utils.config import RunConfig, get_config
from utils.metrics import MONITOR
from utils.train import HYPERPARAMETERS, model_from_hyperparameters

if TYPE_CHECKING:
    import pandas as pd

OBJECTIVE = keras_tuner.Objective(MONITOR, direction="max")

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


class UNetHyperModel(keras_tuner.HyperModel):
    """Builds and compiles a U-Net for one trial's hyperparameters (widths double per level from base_filters)."""

    def __init__(self, image_size: int):
        super().__init__(name="unet")
        self.image_size = image_size

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The compiled U-Net for ``hp``'s base_filters, depth, loss and learning_rate."""
        values = {name: hp.get(name) for name in HYPERPARAMETERS}
        return model_from_hyperparameters(values, self.image_size)  # what utils.train builds from the same values


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
                seed: int = 42, **kwargs) -> keras_tuner.Tuner:
    """A grid-search tuner over ``hyperparameters`` (default: ``search_space()``) that resumes from ``directory``.

    The oracle is KerasTuner's GridSearchOracle where ``grid_resume_fixed()``, else ``ResumableGridSearchOracle``.
    ``kwargs`` go to ``keras_tuner.Tuner`` (for example ``distribution_strategy``).
    """
    oracle_class = keras_tuner.oracles.GridSearchOracle if grid_resume_fixed() else ResumableGridSearchOracle
    oracle = oracle_class(objective=OBJECTIVE, max_trials=max_trials, seed=seed,
                          hyperparameters=hyperparameters or search_space())
    return keras_tuner.Tuner(oracle=oracle, hypermodel=UNetHyperModel(image_size), directory=directory,
                             project_name=project_name, overwrite=False, **kwargs)


def tuning_config(config: RunConfig) -> RunConfig:
    """The run configuration of one trial: the search sizes of ``config`` (smaller and shorter than training)."""
    return dataclasses.replace(config, image_size=config.search_image_size, num_epochs=config.search_epochs,
                               num_samples=config.search_samples)


def trials_table(tuner: keras_tuner.Tuner) -> pd.DataFrame:
    """One row per completed trial: its hyperparameters and score, best first."""
    import pandas as pd

    rows = [{"trial": trial.trial_id, **trial.hyperparameters.values, "score": trial.score}
            for trial in tuner.oracle.trials.values() if trial.status == TrialStatus.COMPLETED]
    return pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    """One process of a distributed grid search (chief or worker, from KERASTUNER_TUNER_ID)."""
    from utils.source import data_root
    from utils.train import prepare_data

    parser = argparse.ArgumentParser(description=main.__doc__)
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
    _, train_data, validation_data = prepare_data(data_root().path, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.search(train_data, validation_data=validation_data, epochs=config.num_epochs, verbose=0)
    print(f"[{role}] search finished", flush=True)


if __name__ == "__main__":
    main()
