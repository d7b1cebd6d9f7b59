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
from utils.metrics import MONITOR, default_min_predicted_area, metrics
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
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        seconds = time.perf_counter() - self.start
        print(f"epoch {epoch + 1:3d}/{self.params['epochs']}  {values}  lr {rate:.1e}  {seconds:.1f} s", flush=True)


def make_callbacks(run_dir: str | Path, patience: int = 8, summary: bool = True) -> list:
    """Best checkpoint by the validation loss, early stopping, LR on plateau, CSV + TensorBoard logs, backup.

    All three watch the validation loss, which falls steadily, rather than the score at threshold 0.5, which
    jumps: early in training a model that predicts nothing scores the all-empty baseline, which on a validation
    split with few positive images is higher than any model with a few stray pixels. A checkpoint chosen by that
    score can be the useless empty model; the loss does not reward predicting nothing. The threshold and minimum
    areas are tuned on validation after training (``utils.evaluate``), and the score is read after them.

    ``BackupAndRestore`` keeps ``run_dir/backup``: if a run is interrupted, the same call resumes it at the
    epoch it reached, with the model's and optimizer's state. The CSV log appends, so it covers both parts.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_loss", mode="min",
                                        save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), histogram_freq=0, write_graph=False),
    ]
    return callbacks + ([EpochSummary()] if summary else [])


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


def prepare_data(root: str | Path, config: RunConfig) -> tuple[pd.DataFrame, tf.data.Dataset, tf.data.Dataset]:
    """Index, patient-grouped split, and the training and validation pipelines for ``config``'s sizes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(root)
    if config.num_samples and config.num_samples < len(index):
        index = index.sample(n=config.num_samples, random_state=config.seed)
    splits = split_index(index, seed=config.seed)
    train = make_dataset(splits[splits["split"] == "train"], config.image_size, config.batch_size, training=True,
                         seed=config.seed)
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
    when called again with the same ``run_dir`` (see ``make_callbacks``). The best model by the validation loss
    is ``run_dir/best.keras``.
    """
    if isinstance(hyperparameters, (str, Path)):
        hyperparameters = read_hyperparameters(hyperparameters)
    elif hyperparameters is not None:
        hyperparameters = check_hyperparameters(hyperparameters, source="hyperparameters")
    config = config or get_config()
    keras.utils.set_random_seed(config.seed)
    device = configure_device()
    splits, train_data, validation_data = prepare_data(root, config)
    if hyperparameters:
        model = model_from_hyperparameters(hyperparameters, config.image_size, device.jit_compile)
    else:
        model = compile_model(build_unet(preset, config.image_size), loss, learning_rate, device.jit_compile)
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=config.num_epochs,
        callbacks=make_callbacks(run_dir) + list(extra_callbacks or []),
        shuffle=False,  # the tf.data pipeline shuffles; fit cannot shuffle a Dataset
        verbose=0,
    )
    return TrainingRun(model, history, splits, device)


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.train``: parse the arguments and train."""
    from utils.source import data_root

    defaults = get_config()
    parser = argparse.ArgumentParser(description="Train the book's U-Net (the same code as the training chapter).")
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
    args = parser.parse_args(argv)
    config = dataclasses.replace(defaults, num_epochs=args.epochs, image_size=args.image_size,
                                 batch_size=args.batch_size)
    root = Path(args.data) if args.data else data_root().path
    run = train(root, args.run_dir, config, args.preset, args.loss, args.learning_rate,
                hyperparameters=args.hyperparameters)
    history = run.history.history
    chosen = min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)  # best.keras's epoch
    print(f"{run.device.description}; mixed precision {'on' if run.device.mixed_precision else 'off'}. "
          f"Best {MONITOR} of any epoch {max(history[MONITOR]):.4f}. Model of epoch {chosen + 1} "
          f"(lowest val_loss {history['val_loss'][chosen]:.4f}, {MONITOR} {history[MONITOR][chosen]:.4f}) "
          f"in {Path(args.run_dir) / 'best.keras'}")


if __name__ == "__main__":
    main()
