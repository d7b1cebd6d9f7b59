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


def jpeg_copy(source: Path, destination: Path) -> Path:
    """A real image (one of pydicom's test files) written as the real data's kind: 8-bit JPEG-baseline CR."""
    from utils.sample import write_dicom

    pixels = (read_image(source) * 255).round().astype(np.uint8)
    patient = {"id": "test", "sex": "M", "age": 40, "view": "PA"}
    write_dicom(destination, pixels, "1.2.3.4", "1.2.3", "1.2.3.5", patient)
    return destination


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "liver_1frame.dcm"])
def test_tensorflow_decodes_what_pydicom_decodes(name, tmp_path, small_sample):
    """Both decoders, at full size, on real images made into JPEG DICOM and on the sample: within 1/255."""
    import tensorflow as tf

    from utils.dicom import decode_jpeg_frame, jpeg_frame

    paths = [jpeg_copy(TEST_FILES / name, tmp_path / "real.dcm"), *sorted(small_sample.rglob("*.dcm"))[:3]]
    for path in paths:
        frame, shape = jpeg_frame(path)
        decoded = decode_jpeg_frame(tf.constant(frame), tf.constant(1)).numpy()[..., 0]
        reference = read_image(path)
        assert decoded.shape == reference.shape == shape
        # each scales its darkest pixel to 0 and brightest to 1, so a brightest value 1 apart moves others slightly
        assert np.abs(decoded - reference).mean() < 1 / 255 and np.abs(decoded - reference).max() <= 3 / 255, path


# pydicom's own SC_rgb_jpeg.dcm declares explicit VR and is written in implicit VR; pydicom warns and reads it.
@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")
@pytest.mark.parametrize("name", ["SC_rgb_jpeg.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm", "MR_small.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm", "CT_small.dcm"])
def test_other_files_keep_the_pydicom_path(name):
    """Colour JPEG, uncompressed, JPEG-LS, 12-bit JPEG, rescaled CT: not for tf.io.decode_jpeg as they are."""
    from utils.dicom import jpeg_frame

    assert jpeg_frame(TEST_FILES / name) is None


def test_shrinking_while_decoding(tmp_path):
    import tensorflow as tf

    from utils.dicom import decode_jpeg_frame, jpeg_frame, jpeg_scale

    assert [jpeg_scale((1024, 1024), size) for size in (1024, 512, 256, 128, 96, 64)] == [1, 2, 4, 8, 8, 8]
    assert jpeg_scale((64, 64), 96) == 1 and jpeg_scale((1024, 1000), 256) == 2
    frame, shape = jpeg_frame(jpeg_copy(TEST_FILES / "liver_1frame.dcm", tmp_path / "liver.dcm"))
    shrunk = decode_jpeg_frame(tf.constant(frame), tf.constant(4)).numpy()
    assert shrunk.shape == (shape[0] // 4, shape[1] // 4, 1) and shrunk.min() == 0.0 and shrunk.max() == 1.0


def test_a_truncated_jpeg_frame_is_reported_with_the_file(tmp_path, small_sample):
    from pydicom.encaps import encapsulate, generate_frames

    from utils.dicom import jpeg_frame

    path = tmp_path / "cut.dcm"
    dataset = pydicom.dcmread(sorted(small_sample.rglob("*.dcm"))[0])
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.PixelData = encapsulate([frame[: len(frame) // 2]])
    dataset.save_as(path)
    with pytest.raises(DicomReadError, match="cut.dcm.*truncated or corrupt"):
        jpeg_frame(path)


def test_metadata_table_when_no_file_has_an_age():
    """No file yields an age (one unreadable, one without PatientAge): NaN ages, not an AttributeError."""
    table = read_metadata([TEST_FILES / "README.txt", TEST_FILES / "MR_truncated.dcm"])
    assert table["age"].dtype == "float64" and table["age"].isna().all()
    assert "InvalidDicomError" in table.loc[0, "error"]


def test_load_index_on_a_data_set_without_patient_ages(tmp_path):
    """No PatientAge anywhere and one unreadable file (its age is NaN, the others' None): the index still loads."""
    from utils.data import scan_index
    from utils.sample import make_sample

    root = make_sample(tmp_path / "data", num_train=3, num_test=0, seed=2)
    broken, *others = sorted(root.rglob("*.dcm"))
    broken.write_bytes(b"not a DICOM file")
    for path in others:
        dataset = pydicom.dcmread(path)
        del dataset.PatientAge
        dataset.save_as(path)
    with pytest.warns(UserWarning, match="1 unreadable files"):
        index, report = scan_index(root)
    assert len(index) == 2 and index["age"].isna().all() and index["age"].dtype == "float64"
    assert broken.name in report["unreadable files"][0]
