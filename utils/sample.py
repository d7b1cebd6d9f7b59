"""The bundled sample: synthetic chest radiographs in exactly the layout of the real SIIM-ACR data.

``ensure_sample()`` creates it on first use (deterministically, about a minute) under ``data/siim-sample``:

    siim/dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   (labelled)
    siim/dicom-images-test/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm    (unlabelled)
    siim/train-rle.csv     columns "ImageId" and " EncodedPixels" (leading space), "-1" for no pneumothorax,
                           one row per region, so an image with two regions has two rows

The files are what the competition's are: 1024x1024 8-bit MONOCHROME2 computed radiographs (modality CR),
JPEG-baseline compressed, with anonymised patient tags. The pictures are not real anatomy: two lung fields
with vessel texture, ribs, heart and diaphragm, and -- in about 22% of images, the real data's rate -- a
pneumothorax: a dark band without lung markings between the chest wall and a collapsed lung's bright edge.
"""
from __future__ import annotations

import io
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage
from scipy import ndimage

from utils import rle
from utils.config import REPO_ROOT

SAMPLE_ROOT = REPO_ROOT / "data" / "siim-sample"
SIZE = 1024
POSITIVE_RATE = 0.22
UID_ROOT = "1.2.276.0.7230010.3.1"  # the prefix the competition's UIDs use
VERSION = "3"  # bump when the generator changes, so old samples are rebuilt


def synthetic_radiograph(rng: np.random.Generator, positive: bool, bilateral: bool = False,
                         size: int = SIZE) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return (uint8 image, list of boolean region masks) for one synthetic chest radiograph."""
    y, x = np.mgrid[0:size, 0:size] / size
    jitter = lambda scale: rng.uniform(-scale, scale)  # noqa: E731

    def ellipse(cy, cx, ry, rx):
        return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1

    def smooth_noise(cells, amplitude):
        return ndimage.zoom(rng.normal(0, amplitude, (cells, cells)), size / cells, order=1)

    body = ellipse(0.58 + jitter(0.02), 0.5, 0.62, 0.47 + jitter(0.02))
    image = np.where(body, 0.72, 0.06)
    lungs = []
    for side in (-1, 1):
        cy, cx = 0.45 + jitter(0.03), 0.5 + side * (0.2 + jitter(0.02))
        ry, rx = 0.28 + jitter(0.03), 0.13 + jitter(0.015)
        lungs.append((cy, cx, ry, rx, side))
        image = np.where(ellipse(cy, cx, ry, rx), 0.32, image)
    lung_field = np.zeros((size, size), bool)
    for cy, cx, ry, rx, _ in lungs:
        lung_field |= ellipse(cy, cx, ry, rx)
    markings = smooth_noise(96, 0.05) * lung_field
    ribs = 0.07 * (np.sin(2 * np.pi * (9 * y + 2.5 * (x - 0.5) ** 2 + rng.uniform(0, 1))) > 0.55)
    heart = ellipse(0.62 + jitter(0.02), 0.56 + jitter(0.02), 0.15, 0.14 + jitter(0.02))
    diaphragm = y > 0.74 + 0.05 * np.cos(2 * np.pi * (x - 0.5)) + jitter(0.02)
    image = image + markings + ribs * body
    image = np.where(heart | (diaphragm & body), 0.78, image)

    regions = []
    if positive:
        chosen = lungs if bilateral else [lungs[rng.integers(2)]]
        for cy, cx, ry, rx, side in chosen:
            lung = ellipse(cy, cx, ry, rx) & ~heart & ~diaphragm
            shrink = rng.uniform(0.55, 0.8)  # how far the lung has collapsed
            collapsed = ellipse(cy + ry * (1 - shrink) * 0.5, cx - side * rx * (1 - shrink),
                                ry * shrink ** 0.5, rx * shrink)
            region = lung & ~collapsed
            edge = collapsed & ~ndimage.binary_erosion(collapsed, iterations=4) & lung
            image = np.where(region, 0.2 + smooth_noise(8, 0.01), image)  # air: dark, no lung markings
            image = np.where(edge, 0.55, image)  # the visceral pleural line
            regions.append(region)

    image = ndimage.gaussian_filter(image, 2.0) + rng.normal(0, 0.02, (size, size))
    image = rng.uniform(0.85, 1.15) * (image - 0.4) + 0.4 + jitter(0.05)  # exposure varies between images
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), regions


def _uid(kind: int, rng: np.random.Generator) -> str:
    parts = (rng.integers(1000, 99999), rng.integers(1517874000, 1517876000), rng.integers(100000, 999999))
    return f"{UID_ROOT}.{kind}.8323329." + ".".join(map(str, parts))


def write_dicom(path: Path, pixels: np.ndarray, image_id: str, study: str, series: str, patient: dict) -> None:
    """Write an 8-bit grayscale CR image as a JPEG-baseline DICOM file with the competition's tags."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = image_id
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, image_id
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "19010101", "000000.00", ""
    ds.Modality, ds.ConversionType, ds.ReferringPhysicianName = "CR", "WSD", ""
    ds.SeriesDescription = f"view: {patient['view']}"
    ds.PatientName = ds.PatientID = patient["id"]
    ds.PatientBirthDate, ds.PatientSex = "", patient["sex"]
    with warnings.catch_warnings():  # the competition's ages lack the "Y" that DICOM's AS type wants: keep that
        warnings.simplefilter("ignore")
        ds.PatientAge = str(patient["age"])
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", patient["view"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.PatientOrientation = "", 1, 1, ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [0.168, 0.168]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def make_sample(root: Path, num_train: int = 300, num_test: int = 20, seed: int = 0) -> Path:
    """Generate the sample under ``root`` (returns ``root / "siim"``); same seed, same files."""
    rng = np.random.default_rng(seed)
    siim = Path(root) / "siim"
    rows = []
    patients = []
    for index in range(num_train + num_test):
        # About one patient in eight has a second radiograph, as in the real data: splits must group them.
        if patients and rng.random() < 0.12:
            patient = patients[rng.integers(len(patients))]
        else:
            patient = {
                "id": str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)))),
                "sex": str(rng.choice(["M", "F"])),
                "age": int(rng.integers(18, 90)),
                "view": str(rng.choice(["PA", "AP"], p=[0.6, 0.4])),
            }
            patients.append(patient)
        positive = rng.random() < POSITIVE_RATE
        pixels, regions = synthetic_radiograph(rng, positive, bilateral=positive and rng.random() < 0.25)
        image_id, study, series = _uid(4, rng), _uid(2, rng), _uid(3, rng)
        folder = "dicom-images-train" if index < num_train else "dicom-images-test"
        write_dicom(siim / folder / study / series / f"{image_id}.dcm", pixels, image_id, study, series, patient)
        if index < num_train:
            rows += [(image_id, rle.encode(region)) for region in regions] or [(image_id, rle.EMPTY)]
    labels = pd.DataFrame(rows, columns=["ImageId", " EncodedPixels"])  # the competition's leading space
    labels.to_csv(siim / "train-rle.csv", index=False)
    return siim


def ensure_sample(root: Path = SAMPLE_ROOT) -> Path:
    """Return the sample's ``siim`` folder, creating it first if it is missing or from another version.

    It is generated in a temporary folder and moved into place at the end, so an interrupted run never leaves
    a half-written sample behind.
    """
    root = Path(root)
    marker = root / "siim" / ".sample-version"
    if marker.exists() and marker.read_text() == VERSION:
        return root / "siim"
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    print(f"Creating the synthetic sample data set in {root} (once, about a minute)...")
    siim = make_sample(staging)
    (siim / ".sample-version").write_text(VERSION)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root / "siim"
