"""The bundled sample: synthetic chest radiographs in exactly the layout of the real SIIM-ACR data.

``ensure_sample()`` creates it on first use (deterministically, about a minute) under ``data/siim-sample``:

    siim/dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   (labelled)
    siim/dicom-images-test/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm    (unlabelled)
    siim/train-rle.csv     columns "ImageId" and " EncodedPixels" (leading space), "-1" for no pneumothorax;
                           an image with several regions has one row per region or, like some real
                           ones, one row holding them all

The files are what the competition's are: 1024x1024 8-bit MONOCHROME2 computed radiographs (modality CR),
JPEG-baseline compressed, with anonymised patient tags. The pictures are drawn, not real: chest anatomy
(``synthetic_radiograph``) and, in about 22% of images, a pneumothorax whose size, position and number of
regions follow the real training labels' distributions (``REAL_STATISTICS``; ``compare_with_real`` checks).
"""
from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from PIL import Image, ImageDraw
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
VERSION = "5"  # bump when the generator changes, so old samples are rebuilt


# Lung outlines for the patient's right lung (the image's left half), in fractions of the image: from the apex
# down the lateral chest wall to the costophrenic angle, along the diaphragm dome, and up the mediastinum.
RIGHT_LUNG = np.array([
    (0.30, 0.091), (0.22, 0.144), (0.16, 0.239), (0.13, 0.377), (0.115, 0.536), (0.11, 0.674), (0.115, 0.769),
    (0.16, 0.743), (0.23, 0.695), (0.31, 0.674), (0.39, 0.69), (0.445, 0.716),
    (0.445, 0.589), (0.44, 0.43), (0.42, 0.271), (0.385, 0.155), (0.345, 0.102),
])
# The left lung: the mirror image, with the heart pushing its lower medial border outwards and its dome lower.
LEFT_LUNG = np.array([
    (0.70, 0.096), (0.78, 0.149), (0.84, 0.245), (0.87, 0.377), (0.885, 0.536), (0.89, 0.685), (0.885, 0.796),
    (0.84, 0.769), (0.78, 0.732), (0.72, 0.716), (0.67, 0.695),
    (0.62, 0.589), (0.575, 0.451), (0.575, 0.314), (0.60, 0.186), (0.635, 0.123), (0.665, 0.102),
])
BODY = np.array([
    (0.40, 0.0), (0.60, 0.0), (0.62, 0.04), (0.80, 0.07), (0.94, 0.14), (0.985, 0.30), (0.975, 0.65),
    (0.96, 1.0), (0.04, 1.0), (0.025, 0.65), (0.015, 0.30), (0.06, 0.14), (0.20, 0.07), (0.38, 0.04),
])
# Where pneumothoraces sit along a lung's outline (0 = apex, 0.45 = costophrenic angle; the medial border, from
# about 0.7 on, is left out): mostly apical, some lateral, few basal -- the real data's centroid distribution.
LOCATIONS = ((0.72, 0.0, 0.05), (0.14, 0.15, 0.06), (0.14, 0.40, 0.05))  # (share, mean, spread)
# The real data's mask areas (fraction of the image) are close to log-normal with these parameters.
AREA_MEDIAN, AREA_LOG_SPREAD = 0.0082, 1.1
MULTI_REGION_RATE = 0.37  # positive masks with two or more connected regions
SEPARATE_ROWS_RATE = 0.63  # of those, the ones whose regions are separate CSV rows (624 of 2,669 images)


def _closed_curve(points: np.ndarray, count: int = 240) -> np.ndarray:
    """A smooth closed curve through ``points`` (a periodic spline), ``count`` points from the first one on."""
    from scipy.interpolate import splev, splprep

    closed = np.vstack([points, points[:1]])
    tck, _ = splprep(closed.T, s=0, per=True)
    return np.stack(splev(np.linspace(0, 1, count, endpoint=False), tck), axis=1)


def _polygon(points: np.ndarray, size: int) -> np.ndarray:
    canvas = Image.new("L", (size, size))
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points * size], fill=1)
    return np.asarray(canvas, bool)


def _lines(paths: list[tuple[np.ndarray, float, float]], size: int) -> np.ndarray:
    """Draw polylines (points, width as a fraction of the image, intensity 0-1) into a float image."""
    canvas = Image.new("L", (size, size))
    draw = ImageDraw.Draw(canvas)
    for points, width, intensity in paths:
        draw.line([tuple(p) for p in points * size], fill=int(255 * intensity), width=max(1, round(width * size)),
                  joint="curve")
    return np.asarray(canvas, np.float32) / 255


def _vessel_tree(rng: np.random.Generator, start: np.ndarray, angle: float, length: float, width: float,
                 depth: int, paths: list) -> None:
    """Branching lung markings: each branch splits in two, shorter, thinner and fainter."""
    end = start + length * np.array([np.cos(angle), np.sin(angle)])
    paths.append((np.stack([start, end]), width, min(1.0, 0.25 + 120 * width)))
    if depth > 0:
        for turn in (-1, 1):
            _vessel_tree(rng, end, angle + turn * rng.uniform(0.25, 0.6), length * rng.uniform(0.65, 0.85),
                         width * 0.72, depth - 1, paths)


def _crescent(outline: np.ndarray, centre: float, half_length: float, depth: float) -> np.ndarray:
    """The polygon between a stretch of a lung's outline and the collapsed lung's edge ``depth`` inside it."""
    count = len(outline)
    steps = np.arange(-half_length, half_length + 1e-9, 1 / count)
    points = outline[np.round((centre + steps) * count).astype(int) % count]
    inward = outline.mean(axis=0) - points
    inward /= np.linalg.norm(inward, axis=1, keepdims=True)
    edge = points + inward * depth * np.clip(1 - (steps / half_length) ** 2, 0, 1)[:, None] ** 0.6
    return np.vstack([points, edge[::-1]]), edge


def pneumothorax_regions(rng: np.random.Generator, lungs: list[np.ndarray], lung_masks: list[np.ndarray],
                         size: int = SIZE) -> list[tuple[np.ndarray, np.ndarray]]:
    """Draw one pneumothorax: a list of (region mask, collapsed-lung edge points), one per connected region.

    The total area is drawn from the real data's distribution; 37% are split into two or three regions, in the
    same lung or both. Each region lies between the chest wall and the collapsed lung's edge.
    """
    total = float(np.clip(AREA_MEDIAN * np.exp(rng.normal(0, AREA_LOG_SPREAD)), 0.0006, 0.09)) * size ** 2
    count = 1 if rng.random() >= MULTI_REGION_RATE else int(rng.choice([2, 3], p=[0.8, 0.2]))
    shares = rng.dirichlet(np.full(count, 2.0)) if count > 1 else np.ones(1)
    first_side = int(rng.random() < 0.41)  # 59% in the image's left half (the patient's right)
    regions: list[tuple[np.ndarray, np.ndarray]] = []
    taken = np.zeros((size, size), bool)
    for share in shares:
        side = first_side if not regions or rng.random() < 0.7 else 1 - first_side
        outline, lung = lungs[side], lung_masks[side]
        for _ in range(8):  # try places until the region does not touch one drawn before
            location = LOCATIONS[rng.choice(len(LOCATIONS), p=[share for share, _, _ in LOCATIONS])]
            centre = float(np.clip(rng.normal(location[1], location[2]), -0.08, 0.62))
            target = share * total
            half_length = float(np.clip(0.8 * np.sqrt(target) / size * rng.uniform(0.75, 1.3), 0.012, 0.25))
            low, high = 0.0, 0.3
            for _ in range(14):  # bisect the depth until the region has the target area
                depth = (low + high) / 2
                polygon, edge = _crescent(outline, centre, half_length, depth)
                region = _polygon(polygon, size) & lung
                low, high = (depth, high) if region.sum() < target else (low, depth)
            if region.any() and not (ndimage.binary_dilation(region, iterations=3) & taken).any():
                regions.append((region, edge))
                taken |= region
                break
    return regions


def synthetic_radiograph(rng: np.random.Generator, positive: bool, size: int = SIZE
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return (uint8 image, list of boolean masks, one per connected region) for one synthetic chest radiograph.

    Drawn in MONOCHROME2 (dense is bright): soft tissue, two lungs with branching vessel markings that fade
    towards the periphery, posterior and anterior rib arcs, clavicles, spine, heart and mediastinum, diaphragm
    domes with sharp costophrenic angles. Patient size, position, rotation, inspiration, exposure and noise
    vary. A pneumothorax is a region at the lung's edge without lung markings, slightly darker, bounded by the
    thin bright line of the collapsed lung's visceral pleura; its contrast varies from obvious to subtle.
    """
    scale = rng.uniform(0.9, 1.04, 2)
    angle = np.deg2rad(rng.uniform(-3, 3))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.uniform(-0.025, 0.025, 2)

    def place(points: np.ndarray) -> np.ndarray:  # the patient's size, rotation and position in the image
        return ((points - 0.5) * scale) @ rotation.T + 0.5 + shift

    inspiration = rng.uniform(-0.04, 0.04)  # deeper breath: longer lungs, lower domes
    lungs, lung_masks = [], []
    for template in (RIGHT_LUNG, LEFT_LUNG):
        points = template + rng.normal(0, 0.006, template.shape)
        points[:, 1] += inspiration * np.clip((points[:, 1] - 0.15) / 0.6, 0, 1)
        lungs.append(_closed_curve(place(points)))
        lung_masks.append(_polygon(lungs[-1], size))
    lung_field = lung_masks[0] | lung_masks[1]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size

    body = _polygon(place(BODY * [rng.uniform(0.95, 1.05), 1] + [rng.uniform(-0.02, 0.02), 0]), size)
    centre_x = place(np.array([[0.5, 0.5]]))[0, 0]
    thickness = np.clip(1 - np.abs(x - centre_x) * 2.2, 0, 1)  # more tissue in the middle of the chest
    heart_centre = place(np.array([[0.555 + rng.uniform(-0.015, 0.015), 0.6 + inspiration]]))[0]
    heart = ((x - heart_centre[0]) / (0.125 * rng.uniform(0.9, 1.15))) ** 2 + ((y - heart_centre[1]) / 0.12) ** 2
    density = np.where(body, 0.5 + 0.12 * thickness + 0.05 * y, 0.03)
    density += 0.14 * np.clip(1.4 - heart, 0, 1)
    density = np.where(lung_field, 0.17 + 0.12 * y + 0.06 * thickness, density)  # bases: breast and soft tissue

    bones = []
    for side in (-1, 1):
        for k in range(11):  # posterior rib arcs: from the spine out and down the chest wall
            t = np.linspace(0, 1, 24)
            top = 0.1 + 0.062 * k
            arc = np.stack([0.5 + side * (0.035 + 0.4 * np.sin(t * np.pi / 2)), top - 0.05 * np.sin(t * np.pi)
                            + 0.2 * t ** 3], axis=1)
            bones.append((place(arc), 0.015, 0.45))
            if k < 7:  # anterior arcs: fainter, running from the chest wall down towards the middle
                front = np.stack([0.5 + side * (0.41 - 0.28 * t), top + 0.09 + 0.13 * t], axis=1)[:18]
                bones.append((place(front), 0.012, 0.25))
        t = np.linspace(0, 1, 16)
        clavicle = np.stack([0.5 + side * (0.05 + 0.26 * t), 0.125 - 0.05 * t + 0.015 * np.sin(2 * np.pi * t)], 1)
        bones.append((place(clavicle), 0.022, 0.8))
    bones.append((place(np.array([[0.5, 0.0], [0.5, 0.95]])), 0.06, 0.5))  # the spine behind the mediastinum
    density += 0.16 * _lines(bones, size) * body

    vessels = []
    for side in (-1, 1):
        hilum = np.array([0.5 + side * 0.11, 0.43 + inspiration / 2])
        for direction in np.deg2rad([-100, -60, -20, 20, 60]):
            angle = np.pi / 2 - side * (np.pi / 2 + direction) + rng.uniform(-0.2, 0.2)
            _vessel_tree(rng, place(hilum[None])[0], angle, 0.075, 0.009, 5, vessels)
    markings = _lines(vessels, size) * lung_field
    markings *= np.clip(1.3 - 2.2 * np.hypot(*(np.stack([x, y]) - np.array([0.5, 0.45])[:, None, None])), 0.2, 1)

    regions: list[np.ndarray] = []
    air = np.zeros((size, size), bool)
    if positive:
        contrast = rng.uniform(0.15, 1.0)  # from subtle to obvious
        for region, edge in pneumothorax_regions(rng, lungs, lung_masks, size):
            markings[region] = 0  # no lung markings beyond the collapsed lung's edge
            density[region] -= 0.03 + 0.15 * contrast
            line = _lines([(edge, rng.uniform(0.0025, 0.004), 1.0)], size) > 0
            density[line & lung_field & ~region] += 0.05 + 0.2 * contrast  # the visceral pleural line
            regions.append(region)
            air |= region
    texture = ndimage.zoom(rng.normal(0, 1, (128, 128)), size / 128, order=1).astype(np.float32)
    density += 0.13 * markings + 0.025 * texture * (lung_field & ~air)  # parenchyma

    image = ndimage.gaussian_filter(density.astype(np.float32), rng.uniform(1.0, 2.0))
    image += ndimage.zoom(rng.normal(0, 0.02, (32, 32)), size / 32, order=1).astype(np.float32)  # mottle
    image += rng.normal(0, rng.uniform(0.008, 0.025), (size, size)).astype(np.float32)
    low, high = rng.uniform(-0.05, 0.05), rng.uniform(0.8, 1.0)  # exposure and windowing vary
    image = np.clip((image - low) / (high - low), 0, 1) ** rng.uniform(0.8, 1.25)
    return (image * 255).round().astype(np.uint8), regions


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


def _draw_and_write(task: dict) -> list[tuple[str, str]]:
    """Draw one radiograph from its own seed, write its DICOM file, and return its label rows (none if unlabelled)."""
    pixels, regions = synthetic_radiograph(np.random.default_rng(task["seed"]), task["positive"])
    if len(regions) > 1 and task["one_row"]:  # several regions in one CSV row, as some real labels have
        regions = [np.logical_or.reduce(regions)]
    write_dicom(task["path"], pixels, task["image_id"], task["study"], task["series"], task["patient"])
    if not task["labelled"]:
        return []
    return [(task["image_id"], rle.encode(region)) for region in regions] or [(task["image_id"], rle.EMPTY)]


def make_sample(root: Path, num_train: int = 400, num_test: int = 20, seed: int = 0, workers: int | None = None
                ) -> Path:
    """Generate the sample under ``root`` (returns ``root / "siim"``); same seed, same files.

    Every image is drawn from its own seed, so the files are the same whether they are drawn one after the other
    or by ``workers`` processes at once (default: one per CPU core, for 32 images or more).
    """
    rng = np.random.default_rng(seed)
    image_seeds = np.random.SeedSequence(seed).spawn(num_train + num_test)
    siim = Path(root) / "siim"
    tasks, patients = [], []
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
        image_id, study, series = _uid(4, rng), _uid(2, rng), _uid(3, rng)
        folder = "dicom-images-train" if index < num_train else "dicom-images-test"
        tasks.append({"seed": image_seeds[index], "positive": bool(rng.random() < POSITIVE_RATE),
                      "one_row": bool(rng.random() >= SEPARATE_ROWS_RATE), "labelled": index < num_train,
                      "path": siim / folder / study / series / f"{image_id}.dcm", "image_id": image_id,
                      "study": study, "series": series, "patient": patient})
    workers = workers or ((os.cpu_count() or 1) if len(tasks) >= 32 else 1)
    if workers > 1:  # "spawn": safe in a process that has already started TensorFlow's threads
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            label_rows = list(pool.map(_draw_and_write, tasks, chunksize=8))
    else:
        label_rows = [_draw_and_write(task) for task in tasks]
    labels = pd.DataFrame([row for rows in label_rows for row in rows], columns=["ImageId", " EncodedPixels"])
    labels.to_csv(siim / "train-rle.csv", index=False)  # the competition's leading space in " EncodedPixels"
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
    staging = root.with_name(f"{root.name}.partial-{os.getpid()}")  # one per process: two may start at once
    shutil.rmtree(staging, ignore_errors=True)
    print(f"Creating the synthetic sample data set in {root} (once, about a minute)...")
    siim = make_sample(staging)
    (siim / ".sample-version").write_text(VERSION)
    if marker.exists() and marker.read_text() == VERSION:  # another process finished first: keep its copy
        shutil.rmtree(staging)
    else:
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    return root / "siim"


# The real stage-2 training labels (12,954 rows, 12,047 images, 2,669 positive), measured from the competition's
# CSV: quantiles of each positive image's mask area (fraction of the image) and centroid (pixels of 1024).
REAL_STATISTICS = {
    "area (% of image)": {0.05: 0.13, 0.10: 0.19, 0.25: 0.39, 0.50: 0.82, 0.75: 1.75, 0.90: 3.19, 0.95: 4.37},
    "centroid row": {0.10: 126, 0.25: 167, 0.50: 229, 0.75: 376, 0.90: 591},
    "centroid column": {0.10: 266, 0.50: 404, 0.90: 744},
}
REAL_SHARES = {"positive images (%)": 22.15, "positive masks with 2+ regions (%)": 37.0,
               "positive images with 2+ CSV rows (%)": 23.4, "centroid in the image's left half (%)": 59.0}


def mask_statistics(index: pd.DataFrame, shape: tuple[int, int] = (SIZE, SIZE)) -> pd.DataFrame:
    """One row per positive image of an index (``utils.data.load_index``): area, centroid, regions, CSV rows."""
    rows = []
    for image_id, rles in index.loc[index["has_pneumothorax"], ["image_id", "rles"]].itertuples(index=False):
        mask = rle.decode_union(rles, shape).astype(bool)
        row, column = ndimage.center_of_mass(mask)
        rows.append({"image_id": image_id, "area (% of image)": 100 * mask.mean(), "centroid row": row,
                     "centroid column": column, "regions": ndimage.label(mask)[1], "csv rows": len(rles)})
    return pd.DataFrame(rows)


def compare_with_real(statistics: pd.DataFrame, positive_share: float) -> pd.DataFrame:
    """The sample's quantiles and shares next to the real data's (``REAL_STATISTICS``, ``REAL_SHARES``)."""
    rows = []
    for column, quantiles in REAL_STATISTICS.items():
        for q, real in quantiles.items():
            rows.append((column, f"{q:.0%} quantile", real, statistics[column].quantile(q)))
    width = SIZE if statistics.empty else None
    measured = {
        "positive images (%)": 100 * positive_share,
        "positive masks with 2+ regions (%)": 100 * (statistics["regions"] >= 2).mean(),
        "positive images with 2+ CSV rows (%)": 100 * (statistics["csv rows"] >= 2).mean(),
        "centroid in the image's left half (%)": 100 * (statistics["centroid column"] < (width or SIZE) / 2).mean(),
    }
    rows += [(name, "share", REAL_SHARES[name], value) for name, value in measured.items()]
    table = pd.DataFrame(rows, columns=["statistic", "at", "real data", "sample"])
    table["sample / real"] = table["sample"] / table["real data"]
    return table
