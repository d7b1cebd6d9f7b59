"""Training a U-Net with model.fit: data, model, callbacks, device set-up, and a command-line entry point.

    python -m utils.train --preset compact --epochs 40 --image-size 512 --run-dir runs/compact
    python -m utils.train --hyperparameters runs/chapter09/best_hyperparameters.json --run-dir runs/best

runs the same training as the training chapter (``UNET_BOOK_MODE`` picks the default sizes); the second form
trains the configuration that a search chose (``write_hyperparameters``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from utils.config import RunConfig, get_config
from utils.data import load_index, make_dataset, split_index
from utils.losses import LOSSES
from utils.metrics import MONITOR, PREDICTED_POSITIVE, RULE, default_min_predicted_area, failure_mode, metrics
from utils.model import PRESETS, build_unet


@dataclasses.dataclass(frozen=True)
class DeviceSetup:
    """What ``configure_device`` chose: the device, the dtype policy, and whether to compile with XLA."""

    description: str  # e.g. "CPU only" or "1 GPU(s): /physical_device:GPU:0"
    mixed_precision: bool  # the global dtype policy is mixed_float16 (else float32)
    jit_compile: bool  # pass to compile_model(jit_compile=...): XLA on a GPU


def configure_device(mixed_precision: bool | None = None) -> DeviceSetup:
    """Set the mixed-precision policy (on with a GPU, off on a CPU) and decide on XLA (likewise).

    The policy is set here, globally; call this before building the model, since it applies to layers created
    afterwards. XLA is only decided here: ``compile_model(..., jit_compile=setup.jit_compile)`` applies it, as
    ``train`` does.
    """
    gpus = tf.config.list_physical_devices("GPU")
    use_mixed = bool(gpus) if mixed_precision is None else mixed_precision
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    description = f"{len(gpus)} GPU(s): {', '.join(g.name for g in gpus)}" if gpus else "CPU only"
    return DeviceSetup(description, use_mixed, bool(gpus))


@dataclasses.dataclass
class TrainingRun:
    """What ``train`` returns: the trained model (its last epoch), the history, the data split, the device."""

    model: keras.Model
    history: keras.callbacks.History
    splits: pd.DataFrame
    device: DeviceSetup


class EpochSummary(keras.callbacks.Callback):
    """One short line per epoch instead of a progress bar."""

    def __init__(self, keys=("loss", "val_loss", MONITOR, "val_positive_dice")):
        super().__init__()
        self.keys = keys

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        values = "  ".join(f"{k} {logs[k]:.3f}" for k in self.keys if k in logs)
        # the rate this epoch trained with (logged before ReduceLROnPlateau may lower it for the next)
        rate = float(logs.get("learning_rate", keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        seconds = time.perf_counter() - self.start
        print(f"epoch {epoch + 1:3d}/{self.params['epochs']}  {values}  lr {rate:.1e}  {seconds:.1f} s", flush=True)


class ResumeState(keras.callbacks.Callback):
    """Makes a resumed ``fit`` continue exactly as the uninterrupted run would have.

    ``BackupAndRestore`` restores the weights, the optimizer and the epoch, and nothing else. At the end of every
    epoch this callback writes the state of the other callbacks (the checkpoint's best value, early stopping's
    and the schedule's patience counters) to ``run_dir/backup/callbacks.json``, before the backup is written. At
    the first epoch of a call it learns where ``fit`` starts, restores that state, and cuts ``log.csv`` back to
    the epochs before it, so every epoch is logged once. It also sets ``epoch`` (a ``tf.Variable``) at the start
    of each epoch, from which the training pipeline draws that epoch's order and augmentation
    (``utils.data.make_dataset``). It must come after the callbacks it saves and before ``BackupAndRestore``.
    """

    FIELDS = ("best", "wait", "cooldown_counter", "best_epoch", "stopped_epoch")

    def __init__(self, run_dir: str | Path, callbacks: list, epoch: tf.Variable | None = None):
        super().__init__()
        self.run_dir, self.saved, self.epoch = Path(run_dir), callbacks, epoch
        self.path = self.run_dir / "backup" / "callbacks.json"

    def on_train_begin(self, logs=None):
        self.first = True

    def on_epoch_begin(self, epoch, logs=None):
        if self.epoch is not None:
            self.epoch.assign(epoch)
        if not self.first:
            return
        self.first = False
        states = json.loads(self.path.read_text()) if self.path.exists() else {}
        if epoch > 0:
            if str(epoch - 1) not in states:
                raise ValueError(f"{self.run_dir}/backup resumes at epoch {epoch + 1}, but {self.path} has no state "
                                 "for the epoch before it; delete the run folder to start the run again")
            for callback, fields in zip(self.saved, states[str(epoch - 1)], strict=True):
                for name, value in fields.items():
                    setattr(callback, name, value)
        self.states = {k: v for k, v in states.items() if int(k) < epoch}
        log = self.run_dir / "log.csv"
        if log.exists() and log.stat().st_size:
            lines = log.read_text().splitlines(keepends=True)
            kept = [line for line in lines[1:] if line.strip() and int(line.split(",", 1)[0]) < epoch]
            log.write_text("".join(lines[:1] + kept))  # the header stays: CSVLogger has already looked for it

    def on_epoch_end(self, epoch, logs=None):
        def plain(value):
            return float(value) if value is not None and not isinstance(value, int) else value

        self.states[str(epoch)] = [{name: plain(getattr(callback, name)) for name in self.FIELDS
                                    if hasattr(callback, name)} for callback in self.saved]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.states))
        partial.replace(self.path)  # atomic: a kill leaves the old file or the new one


def make_callbacks(run_dir: str | Path, patience: int = 8, summary: bool = True,
                   epoch: tf.Variable | None = None) -> list:
    """Best checkpoint by the validation loss, early stopping, LR on plateau, CSV + TensorBoard logs, backup.

    All three watch the validation loss (see the training chapter for why not the score). ``BackupAndRestore``
    keeps ``run_dir/backup``: if a run is interrupted, even killed, the same call resumes it at the epoch it
    reached, and ``ResumeState`` makes the rest of the run what it would have been: the checkpoint, early
    stopping and the schedule keep their state, ``log.csv`` holds each epoch once, and ``epoch`` (give the one
    the training pipeline was built with) makes each epoch's data a function of the seed and the epoch number.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_loss", mode="min",
                                                 save_best_only=True)
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=patience)
    schedule = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5)
    callbacks = [
        checkpoint, stopping, schedule,
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), histogram_freq=0, write_graph=False),
        *([EpochSummary()] if summary else []),
        ResumeState(run_dir, [checkpoint, stopping, schedule], epoch),
        # Last: the epoch is saved once all else is written; a copy of the one before survives a kill mid-save.
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), double_checkpoint=True),
    ]
    return callbacks


def chosen_epoch(history: dict | pd.DataFrame) -> dict:
    """The book's one rule for "how good is this run": the epoch with the lowest validation loss, and its scores.

    That is the epoch ``best.keras`` holds, so the search, the benchmarks and the chapters judge a run by the
    model the run keeps. ``history`` is ``History.history`` or a run's ``log.csv`` as a DataFrame. Returns the
    epoch (0-based), its val_loss, its validation competition score (``MONITOR``), its share of images predicted
    positive, and ``failure``: "predicts nothing", "marks nearly every image" or "" (``metrics.failure_mode``).
    The best score of *any* epoch is not used: a model that predicts nothing scores the all-empty baseline.
    """
    columns = history.to_dict("list") if isinstance(history, pd.DataFrame) else history
    losses = [float(v) for v in columns[RULE]]
    if not losses or all(math.isnan(v) for v in losses):
        raise ValueError(f"no epoch has a {RULE}: train with validation data")
    epoch = min(range(len(losses)), key=lambda i: math.inf if math.isnan(losses[i]) else losses[i])
    share = float(columns[f"val_{PREDICTED_POSITIVE}"][epoch]) if f"val_{PREDICTED_POSITIVE}" in columns else None
    return {"epoch": epoch, RULE: losses[epoch], "score": float(columns[MONITOR][epoch]),
            "predicted_positive": share, "failure": "" if share is None else failure_mode(share)}


def compile_model(model: keras.Model, loss: str = "bce_dice", learning_rate: float = 1e-3,
                  jit_compile: bool = False) -> keras.Model:
    """Compile ``model`` with Adam, the loss named ``loss`` (a key of ``losses.LOSSES``) and the book's metrics.

    The competition score counts a prediction below 0.2% of the image as empty (``min_predicted_area``);
    ``jit_compile=True`` compiles the training step with XLA.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not known; choose one of {sorted(LOSSES)}")
    min_area = default_min_predicted_area(model.input.shape[1])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=LOSSES[loss], metrics=metrics(min_area),
                  jit_compile=jit_compile)
    # Create Adam's moment variables now rather than inside the first traced training step, where TensorFlow
    # would then trace the step a second time: this halves the first epoch's start-up (about 5 s on 2 CPU cores).
    model.optimizer.build(model.trainable_variables)
    return model


# What a hyperparameter file holds: the width of the first level (the others double from it), the number of
# levels, Adam's learning rate and the loss. The search chapter writes one; ``train`` and the command line read it.
HYPERPARAMETERS = {"base_filters": int, "depth": int, "learning_rate": float, "loss": str}


def write_hyperparameters(values: dict, path: str | Path) -> Path:
    """Write the hyperparameters ``train`` needs (``HYPERPARAMETERS``' keys) to a JSON file; extra keys are dropped."""
    checked = check_hyperparameters({name: values.get(name) for name in HYPERPARAMETERS}, source="the values given")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(checked, indent=2) + "\n")
    return path


def read_hyperparameters(path: str | Path) -> dict:
    """Read and check a file written by ``write_hyperparameters``; a ValueError names the file and what is wrong."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read hyperparameters from {path}: {error}. Write it with "
                         "utils.train.write_hyperparameters (the search chapter does).") from None
    return check_hyperparameters(values, source=str(path))


def check_hyperparameters(values: dict, source: str) -> dict:
    """``values`` with each of ``HYPERPARAMETERS`` present, of its type and in range; else a ValueError."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a JSON object with keys {sorted(HYPERPARAMETERS)}")
    missing = sorted(set(HYPERPARAMETERS) - set(values))
    if missing or any(values[name] is None for name in HYPERPARAMETERS):
        raise ValueError(f"{source}: missing {missing or [n for n in HYPERPARAMETERS if values[n] is None]}; "
                         f"a hyperparameter file needs {sorted(HYPERPARAMETERS)}")
    checked = {}
    for name, kind in HYPERPARAMETERS.items():
        value = values[name]
        if kind is int and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"{source}: {name}={value!r} must be a positive whole number")
        if kind is float and not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value < 1):
            raise ValueError(f"{source}: {name}={value!r} must be a number between 0 and 1")
        if name == "loss" and value not in LOSSES:
            raise ValueError(f"{source}: loss={value!r} is not known; choose one of {sorted(LOSSES)}")
        checked[name] = kind(value)
    return checked


def model_from_hyperparameters(values: dict, image_size: int, jit_compile: bool = False) -> keras.Model:
    """The compiled compact U-Net with ``values``' widths (doubling from base_filters), depth, loss and rate."""
    base, depth = values["base_filters"], values["depth"]
    encoder = tuple(base * 2**level for level in range(depth))
    model = build_unet("compact", image_size, encoder_filters=encoder, bottleneck_filters=base * 2**depth,
                       decoder_filters=encoder[::-1])
    return compile_model(model, values["loss"], values["learning_rate"], jit_compile)


def prepare_data(root: str | Path, config: RunConfig, epoch: tf.Variable | None = None
                 ) -> tuple[pd.DataFrame, tf.data.Dataset, tf.data.Dataset]:
    """Index, patient-grouped split, and the training and validation pipelines for ``config``'s sizes.

    ``epoch``: the variable that tells the training pipeline which epoch it is (see ``make_dataset``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(root)
    if config.num_samples and config.num_samples < len(index):
        index = index.sample(n=config.num_samples, random_state=config.seed)
    splits = split_index(index, seed=config.seed)
    train = make_dataset(splits[splits["split"] == "train"], config.image_size, config.batch_size, training=True,
                         seed=config.seed, epoch=epoch)
    validation = make_dataset(splits[splits["split"] == "validation"], config.image_size, config.batch_size)
    return splits, train, validation


def train(
    root: str | Path,
    run_dir: str | Path,
    config: RunConfig | None = None,
    preset: str = "compact",
    loss: str = "bce_dice",
    learning_rate: float = 1e-3,
    extra_callbacks: list | None = None,
    hyperparameters: dict | str | Path | None = None,
) -> TrainingRun:
    """Train a U-Net on the data under ``root`` with ``config``'s sizes; checkpoints and logs go to ``run_dir``.

    ``hyperparameters`` (a dict or a file from ``write_hyperparameters``), when given, replaces ``preset``,
    ``loss`` and ``learning_rate`` with a searched configuration. An interrupted run resumes where it stopped
    when called again with the same ``run_dir``, and continues as the uninterrupted run would have (see
    ``make_callbacks``). The model of the epoch with the lowest validation loss is ``run_dir/best.keras``; the
    whole run's log is ``run_dir/log.csv``. Called again on a finished run, it trains the run again from scratch.
    """
    if isinstance(hyperparameters, (str, Path)):
        hyperparameters = read_hyperparameters(hyperparameters)
    elif hyperparameters is not None:
        hyperparameters = check_hyperparameters(hyperparameters, source="hyperparameters")
    config = config or get_config()
    keras.utils.set_random_seed(config.seed)
    device = configure_device()
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    splits, train_data, validation_data = prepare_data(root, config, epoch)
    if hyperparameters:
        model = model_from_hyperparameters(hyperparameters, config.image_size, device.jit_compile)
    else:
        model = compile_model(build_unet(preset, config.image_size), loss, learning_rate, device.jit_compile)
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=config.num_epochs,
        callbacks=make_callbacks(run_dir, epoch=epoch) + list(extra_callbacks or []),
        shuffle=False,  # the tf.data pipeline shuffles; fit cannot shuffle a Dataset
        verbose=0,
    )
    return TrainingRun(model, history, splits, device)


def argument_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m utils.train``, with the current mode's sizes as defaults."""
    defaults = get_config()
    parser = argparse.ArgumentParser(prog="python -m utils.train",
                                     description="Train the book's U-Net (the same code as the training chapter).")
    parser.add_argument("--preset", default="compact", choices=sorted(PRESETS))
    parser.add_argument("--hyperparameters", default=None,
                        help="a JSON file from a search (base_filters, depth, learning_rate, loss); "
                             "replaces --preset, --loss and --learning-rate")
    parser.add_argument("--loss", default="bce_dice", choices=sorted(LOSSES))
    parser.add_argument("--epochs", type=int, default=defaults.num_epochs)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--run-dir", default="runs/train", help="checkpoints, logs and the resume backup go here")
    parser.add_argument("--data", default=None, help="data folder (default: $SIIM_DATA_DIR, else the bundled sample)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.train``: parse the arguments and train."""
    from utils.source import data_root

    defaults = get_config()
    args = argument_parser().parse_args(argv)
    config = dataclasses.replace(defaults, num_epochs=args.epochs, image_size=args.image_size,
                                 batch_size=args.batch_size)
    root = Path(args.data) if args.data else data_root().path
    run = train(root, args.run_dir, config, args.preset, args.loss, args.learning_rate,
                hyperparameters=args.hyperparameters)
    log = pd.read_csv(Path(args.run_dir) / "log.csv")  # the whole run, also when this call resumed it
    chosen = chosen_epoch(log)
    flag = f"; warning: it {chosen['failure']}" if chosen["failure"] else ""
    print(f"{run.device.description}; mixed precision {'on' if run.device.mixed_precision else 'off'}. "
          f"{len(log)} epochs logged. Model of epoch {chosen['epoch'] + 1} (lowest val_loss {chosen[RULE]:.4f}, "
          f"{MONITOR} {chosen['score']:.4f}{flag}) in {Path(args.run_dir) / 'best.keras'}")


if __name__ == "__main__":
    main()
