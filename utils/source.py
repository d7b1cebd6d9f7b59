"""Where the data comes from: the real SIIM-ACR data when ``$SIIM_DATA_DIR`` holds it, else the bundled sample.

Every chapter reads the folder that ``data_root()`` returns, through the same code for both.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from utils.config import DATA_VARIABLE, data_dir

LABEL_FILES = ("train-rle.csv", "stage_2_train.csv")  # the seesee mirror's and the competition's stage 2
IMAGE_SHAPE = (1024, 1024)  # rows, columns of every SIIM-ACR radiograph (and of the sample's)


class DataSource(NamedTuple):
    """The folder the chapters read, and a description of it for printing."""

    path: Path
    description: str


def is_complete(root: str | Path) -> bool:
    """True when ``root`` holds a label CSV and at least one DICOM file."""
    root = Path(root)
    return root.is_dir() and any(any(root.rglob(n)) for n in LABEL_FILES) and any(root.rglob("*.dcm"))


def data_root() -> DataSource:
    """The folder the chapters read: ``$SIIM_DATA_DIR`` when it holds the data, else the bundled sample.

    If SIIM_DATA_DIR is set but incomplete, says so and uses the sample (created on first use).
    """
    from utils.sample import ensure_sample  # imports pydicom and scipy: only when the sample is needed

    configured = data_dir()
    if configured is not None:
        if is_complete(configured):
            return DataSource(configured, f"the real data in {configured} (from {DATA_VARIABLE})")
        print(f"{DATA_VARIABLE}={configured} holds no label CSV and DICOM files; using the bundled sample instead.")
    return DataSource(ensure_sample(), "the bundled synthetic sample")
