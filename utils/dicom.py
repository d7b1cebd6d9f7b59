"""Reading chest radiographs from DICOM files: pydicom for every kind, TensorFlow for the common JPEG kind.

``read_image`` decodes any single-frame grayscale file with pydicom. ``jpeg_frame`` hands the compressed bytes of
the kind the real SIIM-ACR data is made of (JPEG baseline, 8-bit MONOCHROME2, one frame, no rescale) to
``decode_jpeg_frame``, which decodes them with ``tf.io.decode_jpeg``: a TensorFlow op, so it runs in parallel
outside Python's GIL, and it can shrink the image by 2, 4 or 8 while decoding (DCT scaling).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pydicom
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import JPEGBaseline8Bit

if TYPE_CHECKING:
    import tensorflow as tf

JPEG_SCALES = (1, 2, 4, 8)  # the factors by which tf.io.decode_jpeg can shrink an image while decoding


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
    dataset = _open(path)
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


def _open(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as error:
        raise DicomReadError(
            f"{path}: not a readable DICOM file ({type(error).__name__}: {error}). "
            "Download it again, or delete it so that it is left out."
        ) from error


def jpeg_frame(path: str | Path) -> tuple[bytes, tuple[int, int]] | None:
    """The JPEG bytes and (rows, columns) of a file that ``decode_jpeg_frame`` can decode as it is, else None.

    That is a file like the real SIIM-ACR ones: JPEG baseline (transfer syntax 1.2.840.10008.1.2.4.50), one
    frame, 8-bit MONOCHROME2, no rescale. Every other file returns None: read it with ``read_image``.
    Raises DicomReadError, naming the file, for a file that is not DICOM or whose JPEG frame is cut short.
    """
    path = Path(path)
    dataset = _open(path)
    eligible = (
        "PixelData" in dataset
        and dataset.file_meta.get("TransferSyntaxUID") == JPEGBaseline8Bit
        and dataset.get("PhotometricInterpretation") == "MONOCHROME2"
        and int(dataset.get("SamplesPerPixel", 1)) == 1
        and int(dataset.get("BitsStored", 0)) == 8
        and int(dataset.get("NumberOfFrames", 1) or 1) == 1
        and float(dataset.get("RescaleSlope", 1) or 1) == 1
        and float(dataset.get("RescaleIntercept", 0) or 0) == 0
    )
    if not eligible:
        return None
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    if not (frame.startswith(b"\xff\xd8") and frame.rstrip(b"\x00").endswith(b"\xff\xd9")):
        raise DicomReadError(
            f"{path}: its JPEG frame lacks a start or end marker: the file is truncated or corrupt. "
            "Download it again, or delete it so that it is left out."
        )
    return frame, (int(dataset.Rows), int(dataset.Columns))


def jpeg_scale(shape: tuple[int, int], image_size: int) -> int:
    """The largest factor of ``JPEG_SCALES`` that keeps both sides of ``shape`` at least ``image_size``."""
    return max(s for s in JPEG_SCALES if s == 1 or min(shape) // s >= image_size)


def decode_jpeg_frame(frame: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Decode a ``jpeg_frame`` in TensorFlow, shrunk by ``scale`` (one of ``JPEG_SCALES``), as ``read_image`` does.

    Returns float32 (rows / scale, columns / scale, 1), scaled so that the darkest pixel is 0 and the brightest
    1. ``tf.io.decode_jpeg`` wants its ratio fixed when the graph is built, so one branch per scale is built and
    ``scale`` picks one when it runs.
    """
    import tensorflow as tf

    # INTEGER_ACCURATE: the same inverse DCT as libjpeg's default, so the pixels match pydicom's within 1/255
    branches = [lambda s=s: tf.io.decode_jpeg(frame, channels=1, ratio=s, dct_method="INTEGER_ACCURATE")
                for s in JPEG_SCALES]
    index = tf.argmax(tf.cast(tf.equal(tf.constant(JPEG_SCALES), scale), tf.int32))
    image = tf.cast(tf.switch_case(tf.cast(index, tf.int32), branches), tf.float32)
    low, high = tf.reduce_min(image), tf.reduce_max(image)
    return tf.where(high > low, (image - low) / tf.maximum(high - low, 1.0), tf.zeros_like(image))


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
    scan of thousands. ``age`` is in years (float64), NaN where the file has none or it is not a number.
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
    # as "string": when no file yields an age, the column holds only NaN (unreadable files) and None (no
    # PatientAge), and .str refuses such a column
    ages = table["age"].astype("string").str.rstrip("Y")
    table["age"] = pd.to_numeric(ages, errors="coerce").astype("float64")
    return table
