"""utils.dicom on real DICOM files: pydicom's own test files, shipped inside its wheel (no download)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from utils.dicom import DicomReadError, read_image, read_metadata

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.mark.parametrize(
    "name, shape",
    [
        ("CT_small.dcm", (128, 128)),  # 16-bit signed, RescaleSlope/Intercept
        ("MR_small.dcm", (64, 64)),
        ("MR_small_RLE.dcm", (64, 64)),  # RLE lossless, pydicom's own decoder
        ("MR_small_jpeg_ls_lossless.dcm", (64, 64)),  # JPEG-LS through pylibjpeg-libjpeg
        ("MR_small_bigendian.dcm", (64, 64)),
        ("JPGExtended.dcm", (1024, 256)),  # JPEG extended, 8-bit
        ("liver_1frame.dcm", (512, 512)),
    ],
)
def test_reads_grayscale_images_into_unit_range(name, shape):
    image = read_image(TEST_FILES / name)
    assert image.shape == shape and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == 1.0


def test_compressed_and_uncompressed_copies_agree():
    names = ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm")
    plain, rle, jpeg_ls = (read_image(TEST_FILES / name) for name in names)
    assert np.array_equal(plain, rle) and np.array_equal(plain, jpeg_ls)


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    dataset = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    dataset.RescaleSlope, dataset.RescaleIntercept = -1, 0  # flips the order of the values
    dataset.save_as(tmp_path / "flipped.dcm")
    assert np.allclose(read_image(tmp_path / "flipped.dcm"), 1 - read_image(TEST_FILES / "CT_small.dcm"), atol=1e-6)


def test_monochrome1_is_inverted(tmp_path):
    dataset = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
    dataset.PhotometricInterpretation = "MONOCHROME1"
    dataset.save_as(tmp_path / "mono1.dcm")
    assert np.allclose(read_image(tmp_path / "mono1.dcm"), 1 - read_image(TEST_FILES / "MR_small.dcm"), atol=1e-6)


@pytest.mark.parametrize(
    "name, message",
    [
        ("MR_truncated.dcm", "truncated"),
        ("rtplan.dcm", "no pixel data"),
        ("README.txt", "not a readable DICOM"),
        ("SC_rgb_rle.dcm", "not grayscale"),
        ("rtdose.dcm", "frames"),
        ("JPEG-lossy.dcm", "no installed decoder"),  # 12-bit JPEG extended: no installed plugin decodes it
    ],
)
def test_bad_files_raise_a_clear_error_naming_the_file(name, message):
    with pytest.raises(DicomReadError, match=message) as caught:
        read_image(TEST_FILES / name)
    assert name in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_file_cut_in_half_is_reported(tmp_path):
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    (tmp_path / "half.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(DicomReadError, match="half.dcm"):
        read_image(tmp_path / "half.dcm")


def test_metadata_table_with_an_unreadable_file():
    table = read_metadata([TEST_FILES / "CT_small.dcm", TEST_FILES / "README.txt"])
    assert table.loc[0, "modality"] == "CT" and pd.isna(table.loc[1, "modality"])
    assert table.loc[0, "patient_id"] == "1CT1" and pd.isna(table.loc[0, "error"])
    assert "InvalidDicomError" in table.loc[1, "error"]
