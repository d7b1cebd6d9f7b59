"""A run that is interrupted -- by an exception, or killed with SIGKILL -- and started again with the same call
ends exactly as the uninterrupted run: the same log with each epoch once, the same best.keras, the same summary.

``BackupAndRestore`` alone restores the weights, the optimizer and the epoch. Without ``ResumeState`` and the
(seed, epoch) pipeline, the resumed epochs see another data order and augmentation, the first epoch after the
restart overwrites best.keras, early stopping and the schedule start their patience again, and the command
line's summary reads only the resumed epochs: each of those makes the comparisons below fail.
"""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest

from utils.config import REPO_ROOT

EPOCHS = 5
# 24 images hold too few positives for the split's stratified folds; the real data has hundreds.
pytestmark = pytest.mark.filterwarnings("ignore:The least populated class in y:UserWarning")


def cli(sample, run_dir):
    return [sys.executable, "-m", "utils.train", "--data", str(sample), "--epochs", str(EPOCHS), "--image-size", "32",
            "--batch-size", "4", "--learning-rate", "0.01", "--run-dir", str(run_dir)]


def run_cli(sample, run_dir):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    done = subprocess.run(cli(sample, run_dir), cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]  # the summary line


@pytest.fixture(scope="module")
def uninterrupted(small_sample, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    return run_dir, run_cli(small_sample, run_dir)


def assert_same_run(run_dir, reference_dir):
    log, reference = pd.read_csv(run_dir / "log.csv"), pd.read_csv(reference_dir / "log.csv")
    assert list(log["epoch"]) == list(range(EPOCHS)) == list(reference["epoch"])  # each epoch logged once
    assert list(log.columns) == list(reference.columns)
    assert np.allclose(log.to_numpy(float), reference.to_numpy(float), rtol=1e-4, atol=1e-6, equal_nan=True)
    best = keras.models.load_model(run_dir / "best.keras", compile=False).get_weights()
    expected = keras.models.load_model(reference_dir / "best.keras", compile=False).get_weights()
    assert all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(best, expected, strict=True))
    assert not (run_dir / "backup").exists()  # removed once the run completed


@pytest.mark.main_stack_only  # 50 s; on the oldest stack chapter 7 crashes and resumes train() itself
def test_a_killed_command_line_run_resumes_to_the_uninterrupted_result(small_sample, tmp_path, uninterrupted):
    reference_dir, reference_summary = uninterrupted
    run_dir = tmp_path / "run"
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    process = subprocess.Popen(cli(small_sample, run_dir), cwd=REPO_ROOT, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = run_dir / "backup" / "training_metadata.json"  # BackupAndRestore's record of the epochs done
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads(progress.read_text())["epoch"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= len(pd.read_csv(run_dir / "log.csv")) < EPOCHS
    summary = run_cli(small_sample, run_dir)  # the same command again
    assert_same_run(run_dir, reference_dir)
    assert summary == reference_summary.replace(str(reference_dir), str(run_dir))
    assert f"{EPOCHS} epochs logged" in summary


class CrashAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.crash, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.crash:
            raise KeyboardInterrupt(f"crash in epoch {self.epoch + 1}")


@pytest.mark.main_stack_only  # on the oldest stack chapter 7 crashes train() mid-epoch and resumes it itself
def test_train_interrupted_mid_epoch_resumes_to_the_uninterrupted_result(small_sample, tmp_path, uninterrupted):
    import dataclasses

    from utils import train
    from utils.config import get_config

    reference_dir, _ = uninterrupted
    config = dataclasses.replace(get_config("quick"), num_epochs=EPOCHS, image_size=32, batch_size=4)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train.train(small_sample, run_dir, config, learning_rate=0.01, extra_callbacks=[CrashAt(3, 1)])
    assert len(pd.read_csv(run_dir / "log.csv")) == 3
    train.train(small_sample, run_dir, config, learning_rate=0.01)
    assert_same_run(run_dir, reference_dir)


def test_resume_state_restores_the_callbacks_and_cuts_the_log_back(tmp_path):
    """The parts of the state BackupAndRestore leaves out: checkpoint best, early stopping and schedule counters."""
    from utils.train import ResumeState, make_callbacks

    def named(callbacks):
        return {type(c).__name__: c for c in callbacks}

    first = named(make_callbacks(tmp_path, summary=False))
    first["ResumeState"].on_train_begin()
    values = {"ModelCheckpoint": {"best": 0.5}, "EarlyStopping": {"best": 0.5, "wait": 2, "best_epoch": 0},
              "ReduceLROnPlateau": {"best": 0.5, "wait": 2, "cooldown_counter": 0}}
    for epoch in range(3):
        first["ResumeState"].on_epoch_begin(epoch)
        for name, fields in values.items():
            for field, value in fields.items():
                setattr(first[name], field, value + epoch if field == "wait" else value)
        first["ResumeState"].on_epoch_end(epoch)
    (tmp_path / "log.csv").write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n")
    second = named(make_callbacks(tmp_path, summary=False))  # a new process: every counter starts over
    for callback in second.values():
        callback.set_model(keras.Sequential())
    second["EarlyStopping"].on_train_begin()
    second["ReduceLROnPlateau"].on_train_begin()
    second["ResumeState"].on_train_begin()
    second["ResumeState"].on_epoch_begin(2)  # BackupAndRestore resumes after epoch 2 of 3 was saved (0-based 1)
    assert second["ModelCheckpoint"].best == 0.5  # not infinity: epoch 3 must beat the best before the crash
    assert second["EarlyStopping"].wait == 3 and second["ReduceLROnPlateau"].wait == 3  # epoch 1's counters
    assert (tmp_path / "log.csv").read_text() == "epoch,loss\n0,1.0\n1,0.9\n"  # epoch 2 will be logged again
    assert isinstance(second["ResumeState"], ResumeState)
