"""utils.tuning: the trial objective (the book's rule, ``utils.train.chosen_epoch``), one real trial at 32 px, and
the grid search interrupted and resumed from its directory. The resume tests need no Keras training: the tuner's
``run_trial`` is replaced by a function that returns a score at once, so ``Tuner.search`` and its reload run as in
chapter 9 but take well under a second."""
import dataclasses
import itertools
import math
import time
import types

import keras
import keras_tuner
import numpy as np
import pytest
from keras_tuner.engine.trial import TrialStatus

from utils import tuning
from utils.config import get_config
from utils.metrics import MONITOR, RULE
from utils.train import prepare_data

pytestmark = pytest.mark.filterwarnings("ignore:.*(currentThread|getName):DeprecationWarning")  # KerasTuner 1.4.8

# search_space()'s default grid: learning rate x loss (width and depth are fixed)
GRID = sorted(itertools.product((1e-4, 1e-3, 1e-2), ("bce_dice", "focal_dice")))


@pytest.fixture(autouse=True)
def not_distributed(monkeypatch):
    """A search in this process only, whatever the environment says about a distributed one."""
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)


def point(trial) -> tuple:
    """A trial's place in GRID."""
    return trial.hyperparameters.values["learning_rate"], trial.hyperparameters.values["loss"]


class Interrupted(KeyboardInterrupt):
    """Stands for Ctrl-C or a lost runtime."""


def search(directory, completed: list, interrupt_at: int | None = None, fail: tuple = (),
           interrupt_before: int | None = None) -> keras_tuner.Tuner:
    """Search with a new ``tuning.grid_search`` tuner on ``directory`` (reloading what is there); trials score at once.

    Appends the grid point of every trial that returns a score to ``completed``. The ``interrupt_at``-th trial
    started in this call raises ``Interrupted`` instead; before the ``interrupt_before``-th trial is created, the
    search raises ``Interrupted``; a point in ``fail`` fails (KerasTuner does not retry it).
    """
    tuner = tuning.grid_search(32, directory)
    started, created = [], []

    def run_trial(trial, *args, **kwargs):
        started.append(point(trial))
        if len(started) == interrupt_at:
            raise Interrupted(f"trial {trial.trial_id} at {point(trial)}")
        if point(trial) in fail:
            raise keras_tuner.errors.FailedTrialError(f"{point(trial)} is set to fail")
        completed.append(point(trial))
        return {tuning.OBJECTIVE.name: point(trial)[0] * (1 + GRID.index(point(trial)))}

    def pre_create_trial():
        created.append(None)
        if len(created) == interrupt_before:
            raise Interrupted(f"before trial {len(created)}")

    tuner.run_trial = run_trial
    tuner.pre_create_trial = pre_create_trial
    tuner.search(verbose=0)
    return tuner


def interrupted_and_resumed(directory, **interruption) -> tuple[list, list, keras_tuner.Tuner]:
    """The grid points completed before and after the interruption, and the resumed tuner."""
    before, after = [], []
    with pytest.raises(Interrupted):
        search(directory, before, **interruption)
    return before, after, search(directory, after)


def test_interrupted_grid_search_runs_every_point_once(tmp_path):
    before, after, resumed = interrupted_and_resumed(tmp_path, interrupt_at=3)
    assert len(before) == 2
    interrupted = point(resumed.oracle.trials[resumed.oracle.start_order[2]])  # the third trial started
    assert interrupted not in before and after[0] == interrupted  # run again, before any new point
    assert sorted(before + after) == GRID  # every point completed, none twice
    trials = resumed.oracle.trials.values()
    assert len(trials) == len(GRID) and {t.status for t in trials} == {TrialStatus.COMPLETED}
    table = tuning.trials_table(resumed)
    assert len(table) == len(GRID) and table["score"].is_monotonic_decreasing


def test_resumed_grid_search_goes_on_past_a_failed_trial(tmp_path, monkeypatch):
    # Stopped after the second trial failed and before the third was created: the walk through the grid must go on
    # from the failed point, as it does in an uninterrupted search.
    monkeypatch.setattr(tuning, "grid_resume_fixed", lambda version=None: False)
    failed = GRID[1]
    before, after, resumed = interrupted_and_resumed(tmp_path, interrupt_before=3, fail=(failed,))
    assert before == GRID[:1]
    statuses = {point(t): t.status for t in resumed.oracle.trials.values()}
    assert statuses == {**dict.fromkeys(GRID, TrialStatus.COMPLETED), failed: TrialStatus.FAILED}
    assert sorted(before + after) == [p for p in GRID if p != failed]


def test_version_tuple():
    assert tuning.version_tuple("1.4.8") == (1, 4, 8)
    assert tuning.version_tuple("1.5.0rc1") == (1, 5, 0)
    assert tuning.version_tuple("2") == (2,)
    with pytest.raises(ValueError, match="'dev'"):
        tuning.version_tuple("dev")


def test_version_guard_picks_the_oracle(tmp_path, monkeypatch):
    fixed = ".".join(map(str, tuning.GRID_RESUME_FIXED_IN))
    library = keras_tuner.oracles.GridSearchOracle
    for version, oracle_class in (("1.4.8", tuning.ResumableGridSearchOracle), (fixed, library), ("2.0.0", library)):
        monkeypatch.setattr(keras_tuner, "__version__", version)
        assert tuning.grid_resume_fixed() == (oracle_class is library)
        assert type(tuning.grid_search(32, tmp_path, project_name=f"v{version}").oracle) is oracle_class, version


def test_library_grid_oracle_resumes_only_where_the_guard_says(tmp_path, monkeypatch):
    """Tells when KerasTuner fixes keras-team/keras-tuner#1055 (or when GRID_RESUME_FIXED_IN names a release without
    the fix): the same interrupted search as above, resumed with KerasTuner's own GridSearchOracle."""
    fixed = tuning.grid_resume_fixed()
    monkeypatch.setattr(tuning, "grid_resume_fixed", lambda version=None: True)  # grid_search: the library's oracle
    try:
        before, after, _ = interrupted_and_resumed(tmp_path, interrupt_at=3)
        resumes = sorted(before + after) == GRID
    except KeyError:  # 1.4.8: the reloaded oracle does not know the retried trial's place in the grid
        resumes = False
    if resumes and not fixed:
        pytest.fail(f"KerasTuner {keras_tuner.__version__}'s GridSearchOracle resumes a grid search: set "
                    f"tuning.GRID_RESUME_FIXED_IN to {tuning.version_tuple(keras_tuner.__version__)} or lower "
                    "(then grid_search uses the library's oracle), and consider removing ResumableGridSearchOracle")
    if fixed and not resumes:
        pytest.fail(f"KerasTuner {keras_tuner.__version__} is at or above tuning.GRID_RESUME_FIXED_IN "
                    f"{tuning.GRID_RESUME_FIXED_IN}, but its GridSearchOracle does not resume a grid search: raise "
                    "GRID_RESUME_FIXED_IN past this release")


# A run whose best score (0.80, epoch 3: it predicts nothing, the all-empty baseline) is not at its lowest val_loss
# (epoch 2), the epoch best.keras keeps.
HISTORY = {"loss": [1.2, 0.9, 0.95], RULE: [1.0, 0.7, 0.9], MONITOR: [0.30, 0.62, 0.80],
           "val_predicted_positive": [0.9, 0.4, 0.0]}


class FixedHistory(keras.Model):
    """A model whose ``fit`` trains nothing and returns ``HISTORY``, to test what a tuner makes of a history."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self(np.zeros((1, 1)))  # built

    def call(self, inputs):
        return self.dense(inputs)

    def fit(self, *args, **kwargs):
        history = keras.callbacks.History()
        history.history = {name: list(values) for name, values in HISTORY.items()}
        return history


def test_trial_metrics_follow_the_lowest_val_loss_epoch():
    assert tuning.OBJECTIVE.direction == "max"
    assert tuning.trial_metrics(HISTORY) == {tuning.OBJECTIVE.name: 0.62, tuning.CHOSEN_EPOCH: 1.0, RULE: 0.7,
                                             tuning.CHOSEN_PREDICTED_POSITIVE: 0.4}


def test_a_trial_scores_at_its_lowest_val_loss_epoch_not_its_best_epoch(tmp_path, monkeypatch):
    # Through KerasTuner itself: with the best epoch's score (KerasTuner's default for a History), this trial
    # would score 0.80, the epoch that predicts nothing.
    monkeypatch.setattr(tuning.UNetHyperModel, "build", lambda self, hp: FixedHistory())
    tuner = tuning.grid_search(32, tmp_path, max_trials=1)
    tuner.search(np.zeros((2, 1)), np.zeros((2, 1)), epochs=3, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == TrialStatus.COMPLETED and trial.score == pytest.approx(0.62)
    table = tuning.trials_table(tuner)
    assert table.loc[0, ["score", "epoch", RULE, "predicted_positive", "flag"]].tolist() == pytest.approx(
        [0.62, 2, 0.7, 0.4, ""])


def test_trials_table_flags_a_trial_that_predicts_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(HISTORY, "val_predicted_positive", [0.9, 0.0, 0.0])
    monkeypatch.setattr(tuning.UNetHyperModel, "build", lambda self, hp: FixedHistory())
    tuner = tuning.grid_search(32, tmp_path, max_trials=1)
    tuner.search(np.zeros((2, 1)), np.zeros((2, 1)), epochs=3, verbose=0)
    assert tuning.trials_table(tuner).loc[0, "flag"] == "predicts nothing"


def test_trials_table_of_a_search_without_a_completed_trial(tmp_path):
    table = tuning.trials_table(tuning.grid_search(32, tmp_path))
    assert table.empty
    assert list(table.columns) == ["trial", "base_filters", "depth", "learning_rate", "loss", "score", "epoch",
                                   RULE, "predicted_positive", "flag"]


class FirstEpochLoss(keras.callbacks.Callback):
    """Records each trial's first-epoch training loss (in a class attribute: KerasTuner copies callbacks)."""

    losses: list = []

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            FirstEpochLoss.losses.append(logs["loss"])


def test_two_trials_with_one_seed_train_alike_on_one_shared_dataset(small_sample, tmp_path, monkeypatch):
    # One real trial of UNetHyperModel.build and fit, twice: two grid points that differ only in a value build()
    # does not read. Both trials take their data from the same dataset object, built with the hypermodel's epoch
    # variable; with the same seed they must start from the same weights and see the same first epoch.
    monkeypatch.setattr(FirstEpochLoss, "losses", [])
    space = tuning.search_space(learning_rates=(1e-3,), losses=("bce_dice",), base_filters=(4,), depths=(2,))
    space.Choice("repeat", [0, 1])
    tuner = tuning.grid_search(32, tmp_path, hyperparameters=space, seed=3)
    config = dataclasses.replace(get_config("quick"), image_size=32, batch_size=8, num_samples=None)
    epoch = getattr(tuner.hypermodel, "epoch", None)
    _, train_data, validation_data = prepare_data(small_sample, config, epoch=epoch)
    tuner.search(train_data, validation_data=validation_data, epochs=1, shuffle=False, verbose=0,
                 callbacks=[FirstEpochLoss()])
    trials = list(tuner.oracle.trials.values())
    assert [t.status for t in trials] == [TrialStatus.COMPLETED] * 2
    first, second = FirstEpochLoss.losses
    assert math.isfinite(first) and first == pytest.approx(second, rel=1e-6)
    assert trials[0].score == pytest.approx(trials[1].score)


def test_the_search_worker_logs_its_trials_and_times(tmp_path, monkeypatch, capsys):
    # utils.tuning.main as chapter 10 runs it, with trials that score at once: every
    # trial it trains is logged as started and ended, by this worker, one after the
    # other, and trial_times reads the lines back from the output.
    import utils.source
    import utils.train

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner7")  # a worker's name, but no chief
    started_at = []
    real_grid_search = tuning.grid_search

    def fast_grid_search(*args, **kwargs):
        tuner = real_grid_search(*args, **kwargs)

        def run_trial(trial, *fit_args, **fit_kwargs):
            started_at.append(time.time())
            return {tuning.OBJECTIVE.name: point(trial)[0]}

        tuner.run_trial = run_trial
        return tuner

    no_data = lambda root, config, epoch=None: (None, None, None)  # noqa: E731
    monkeypatch.setattr(tuning, "grid_search", fast_grid_search)
    data_root = lambda: types.SimpleNamespace(path=tmp_path)  # noqa: E731
    monkeypatch.setattr(utils.source, "data_root", data_root)
    monkeypatch.setattr(utils.train, "prepare_data", no_data)
    directory = tmp_path / "search"
    tuning.main(["--directory", str(directory), "--max-trials", "3", "--image-size",
                 "32"])
    output = capsys.readouterr().out.splitlines()
    assert output[-1] == "[tuner7] search finished"
    stray = "[tuner7] trial 99 ended at 1.0 (COMPLETED)"  # no start logged: skipped
    times = tuning.trial_times(["unrelated line", stray, *output])
    table = tuning.trials_table(real_grid_search(32, directory))
    assert times["worker"].tolist() == ["tuner7"] * 3
    assert sorted(times["trial"]) == sorted(table["trial"]) and times["trial"].is_unique
    assert (times["status"] == TrialStatus.COMPLETED).all()
    logged_to_the_ms = 1e-3
    assert (times["started"] <= np.array(started_at) + logged_to_the_ms).all()
    assert (times["ended"] >= np.array(started_at) - logged_to_the_ms).all()
    ended, started = times["ended"].to_numpy(), times["started"].to_numpy()
    assert (ended[:-1] <= started[1:]).all()  # one worker: one trial after the other


def test_trial_times_keeps_a_trial_whose_end_was_not_logged():
    lines = ["[tuner0] trial 0 started at 10.5", "[tuner1] trial 1 started at 11",
             "[tuner0] trial 0 ended at 20.25 (COMPLETED)", "[tuner1] search finished"]
    table = tuning.trial_times(lines)
    assert table[["worker", "trial", "status"]].values.tolist() == [
        ["tuner0", "0", "COMPLETED"], ["tuner1", "1", ""]]
    assert table["started"].tolist() == [10.5, 11.0] and table["ended"].iloc[0] == 20.25
    assert math.isnan(table["ended"].iloc[1])
