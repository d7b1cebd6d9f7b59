"""Reading chest radiographs from DICOM files with pydicom."""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut


class DicomReadError(ValueError):
    """A DICOM file that cannot be turned into a grayscale image; the message names the file and what to do."""


def read_image(path: str | Path) -> np.ndarray:
    """Read one single-frame grayscale DICOM image as float32 in [0, 1] with shape (rows, columns).

    The stored values go through the modality LUT (RescaleSlope/Intercept), are scaled linearly so that the
    image's darkest pixel is 0 and its brightest 1, and are inverted for MONOCHROME1 (where high values are
    dark), so that bright always means dense (bone), as in a MONOCHROME2 radiograph. 8- and 16-bit data and
    every compressed transfer syntax that an installed pydicom pixel-data plugin decodes are supported.

    Raises DicomReadError (a ValueError) for a file that is not DICOM, is truncated, has no pixel data, is
    colour or multi-frame, or whose compression has no installed decoder.
    """
    path = Path(path)
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as error:
        raise DicomReadError(
            f"{path}: not a readable DICOM file ({type(error).__name__}: {error}). "
            "Download it again, or delete it so that it is left out."
        ) from error
    if "PixelData" not in dataset:
        raise DicomReadError(
            f"{path}: has no pixel data (SOP class {dataset.get('SOPClassUID', '?')}); "
            "it is not an image, leave it out."
        )
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomReadError(
            f"{path}: photometric interpretation {photometric or 'missing'!r} is not grayscale; "
            "convert it to MONOCHROME2 first, this reader will not guess how to turn colour into density."
        )
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomReadError(f"{path}: has {dataset.NumberOfFrames} frames; pass a single-frame radiograph.")
    syntax = dataset.file_meta.get("TransferSyntaxUID", None)
    try:
        pixels = dataset.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        raise DicomReadError(
            f"{path}: no installed decoder for transfer syntax {getattr(syntax, 'name', syntax)} ({error}). "
            "Install the pydicom plugin it names (for example pylibjpeg-openjpeg for JPEG 2000)."
        ) from error
    except Exception as error:  # truncated or inconsistent pixel data
        raise DicomReadError(
            f"{path}: its pixel data cannot be decoded ({type(error).__name__}: {error}). The file is probably "
            "truncated or corrupt: download it again."
        ) from error
    image = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float32)
    low, high = float(image.min()), float(image.max())
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    return image


METADATA_TAGS = {
    "image_id": "SOPInstanceUID",
    "patient_id": "PatientID",
    "sex": "PatientSex",
    "age": "PatientAge",
    "view_position": "ViewPosition",
    "modality": "Modality",
    "rows": "Rows",
    "columns": "Columns",
    "photometric": "PhotometricInterpretation",
}


def read_metadata(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per file with the tags in METADATA_TAGS (headers only, pixel data is not read).

    Unreadable files get a row with an ``error`` message instead of raising, so one bad file does not stop a
    scan of thousands.
    """
    rows = []
    for path in paths:
        row = {"path": str(path), "error": None}
        try:
            with warnings.catch_warnings():  # e.g. the competition's ages "38" instead of "038Y"
                warnings.simplefilter("ignore")
                dataset = pydicom.dcmread(path, stop_before_pixels=True)
            for column, keyword in METADATA_TAGS.items():
                value = dataset.get(keyword, None)
                row[column] = None if value is None else str(value)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as error:
            row["error"] = f"{type(error).__name__}: {error}"
        rows.append(row)
    table = pd.DataFrame(rows, columns=["path", *METADATA_TAGS, "error"])
    table["age"] = pd.to_numeric(table["age"].str.rstrip("Y"), errors="coerce")
    return table
