"""Where the data comes from: the real SIIM-ACR data when ``$SIIM_DATA_DIR`` holds it, or when Kaggle Notebooks has
it attached under ``/kaggle/input``; else the bundled sample.

Every chapter reads the folder that ``data_root()`` returns, through the same code for both.

A folder counts as data when it holds a label CSV and at least one DICOM file. ``utils.kaggle_download`` also
marks the folder it downloads into: ``DOWNLOAD_STARTED`` before it starts, ``DOWNLOAD_COMPLETE`` once the archive
is downloaded and unpacked. A folder with the first marker and not the second is an interrupted download and does
not count, however many files it holds. A folder with neither marker (the data copied there by hand, or Kaggle's
attached ``/kaggle/input/...``) is judged by its files alone.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from utils.config import DATA_VARIABLE, data_dir

# The competition's stage-2 labels (the stage-1 training *and* test images: 12,047 images) first, then the
# mirrors' stage-1 training labels: stage_2_train.csv placed beside a mirror's folders labels both of them.
LABEL_FILES = ("stage_2_train.csv", "train-rle.csv")
KAGGLE_VARIABLE = "KAGGLE_KERNEL_RUN_TYPE"  # set in every Kaggle notebook's kernel
KAGGLE_INPUT = Path("/kaggle/input")  # where Kaggle attaches datasets and competitions, read-only
KAGGLE_INPUT_VARIABLE = "UNET_BOOK_KAGGLE_INPUT"  # another folder to search instead of KAGGLE_INPUT (tests)
TRAINING_IMAGES = "dicom-images-train"  # the mirrors' folder of labelled training DICOMs
IMAGE_SHAPE = (1024, 1024)  # rows, columns of every SIIM-ACR radiograph (and of the sample's)


class DataSource(NamedTuple):
    """The folder the chapters read, and a description of it for printing."""

    path: Path
    description: str


DOWNLOAD_STARTED = ".download-started"  # written by utils.kaggle_download before it downloads
DOWNLOAD_COMPLETE = ".download-complete"  # written by it after the download and the unpacking finished


def interrupted_download(root: str | Path) -> bool:
    """True when a download into ``root`` began (``DOWNLOAD_STARTED``) and never finished (no ``DOWNLOAD_COMPLETE``)."""
    root = Path(root)
    return (root / DOWNLOAD_STARTED).exists() and not (root / DOWNLOAD_COMPLETE).exists()


def holds_data_files(root: str | Path) -> bool:
    """True when ``root`` holds a label CSV and at least one DICOM file (at any depth)."""
    root = Path(root)
    return root.is_dir() and any(any(root.rglob(n)) for n in LABEL_FILES) and any(root.rglob("*.dcm"))


def is_complete(root: str | Path) -> bool:
    """True when ``root`` holds a label CSV and at least one DICOM file, and is not an interrupted download."""
    return holds_data_files(root) and not interrupted_download(root)


def on_kaggle() -> bool:
    """True in a Kaggle notebook's kernel (``KAGGLE_KERNEL_RUN_TYPE`` is set there)."""
    return KAGGLE_VARIABLE in os.environ


def kaggle_attached_data() -> Path | None:
    """The SIIM training data attached to a Kaggle notebook, found with no setting, or None.

    Searches ``/kaggle/input`` (or ``$UNET_BOOK_KAGGLE_INPUT``) up to four folders deep for ``dicom-images-train``
    beside a label CSV: the layout of both mirrors, ``seesee/siim-train-test`` (``siim/dicom-images-train``,
    ``siim/train-rle.csv``) and ``jesperdramsch/siim-acr-pneumothorax-segmentation-data``
    (``pneumothorax/dicom-images-train``). Returns the folder that holds both. The competition's own files
    (``stage_2_images``: the stage-2 *test* images) hold no training image and are not chosen.
    """
    base = Path(os.environ.get(KAGGLE_INPUT_VARIABLE, KAGGLE_INPUT))
    for depth in range(1, 5):
        for images in sorted(base.glob("/".join(["*"] * depth) + f"/{TRAINING_IMAGES}")):
            if images.is_dir() and any((images.parent / name).is_file() for name in LABEL_FILES):
                return images.parent
    return None


def data_root() -> DataSource:
    """The folder the chapters read: ``$SIIM_DATA_DIR`` when it holds the data; on Kaggle, the SIIM data attached
    to the notebook (``kaggle_attached_data``); else the bundled sample.

    If SIIM_DATA_DIR is set but incomplete (no label CSV and DICOM files, or an interrupted download), says so
    and uses the sample (created on first use). Nothing in SIIM_DATA_DIR is deleted.
    """
    from utils.sample import ensure_sample  # imports pydicom and scipy: only when the sample is needed

    configured = data_dir()
    if configured is None and on_kaggle():
        attached = kaggle_attached_data()
        if attached is not None:
            return DataSource(attached, f"the data attached to this Kaggle notebook, {attached}")
        print("No SIIM training data is attached to this Kaggle notebook (Add Input: the dataset "
              "seesee/siim-train-test); using the bundled sample.")
    if configured is not None:
        if is_complete(configured):
            return DataSource(configured, f"the real data in {configured} (from {DATA_VARIABLE})")
        if interrupted_download(configured):
            print(f"{DATA_VARIABLE}={configured} holds a download that did not finish ({DOWNLOAD_STARTED} but no "
                  f"{DOWNLOAD_COMPLETE}): run the download again (chapter 6, utils.kaggle_download.download) to "
                  "complete it. Using the bundled sample until then; nothing was deleted.")
        else:
            print(f"{DATA_VARIABLE}={configured} holds no label CSV and DICOM files; using the bundled sample instead.")
    return DataSource(ensure_sample(), "the bundled synthetic sample")
