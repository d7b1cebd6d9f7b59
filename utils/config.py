"""One run configuration for every chapter: quick mode (CI, workshops) or full mode (real data).

The mode comes from the environment variable ``UNET_BOOK_MODE`` (``quick`` unless told otherwise).
The two modes differ only in sizes -- epochs, image size, number of images -- never in code path.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

MODE_VARIABLE = "UNET_BOOK_MODE"
DATA_VARIABLE = "SIIM_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Sizes that a chapter uses; everything else is the same in both modes."""

    mode: str
    image_size: int  # side of the square images fed to the network, pixels
    num_epochs: int  # training epochs
    batch_size: int
    num_samples: int | None  # images to use; None means all that are present
    search_image_size: int  # hyperparameter-search trials: smaller images ...
    search_epochs: int  # ... fewer epochs ...
    search_samples: int | None  # ... and fewer images than a training run
    seed: int = 42


PRESETS: dict[str, dict] = {
    "quick": dict(image_size=64, num_epochs=10, batch_size=8, num_samples=None,
                  search_image_size=32, search_epochs=2, search_samples=80),
    "full": dict(image_size=512, num_epochs=40, batch_size=16, num_samples=None,
                 search_image_size=256, search_epochs=10, search_samples=None),
}


def get_config(mode: str | None = None) -> RunConfig:
    """Return the run configuration for ``mode`` (default: ``$UNET_BOOK_MODE`` or ``quick``)."""
    mode = (mode or os.environ.get(MODE_VARIABLE) or "quick").strip().lower()
    if mode not in PRESETS:
        raise ValueError(
            f"{MODE_VARIABLE}={mode!r} is not a run mode; set it to one of {sorted(PRESETS)}."
        )
    return RunConfig(mode=mode, **PRESETS[mode])


def data_dir() -> Path | None:
    """The real data's location from ``$SIIM_DATA_DIR``, or None when it is not set."""
    value = os.environ.get(DATA_VARIABLE)
    return Path(value).expanduser() if value else None
