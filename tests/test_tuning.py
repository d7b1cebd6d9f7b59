"""utils.tuning's grid search, interrupted and resumed from its directory, without Keras training: the tuner's
``run_trial`` is replaced by a function that returns a score at once, so ``Tuner.search`` and its reload run as in
chapter 9 but take well under a second."""
import itertools

import keras_tuner
import pytest
from keras_tuner.engine.trial import TrialStatus

from utils import tuning

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
        return {"val_competition_score": point(trial)[0] * (1 + GRID.index(point(trial)))}

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
