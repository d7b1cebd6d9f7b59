"""From a folder of SIIM-ACR files to training batches: index, patient-grouped split, tf.data pipeline."""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from utils import rle
from utils.dicom import DicomReadError, decode_jpeg_frame, jpeg_frame, jpeg_scale, read_image, read_metadata
from utils.source import LABEL_FILES, data_root

if TYPE_CHECKING:
    import tensorflow as tf


def find_label_file(root: str | Path) -> Path:
    """The label CSV under ``root`` (either name, any depth); ValueError saying what is expected if none."""
    root = Path(root)
    for name in LABEL_FILES:
        found = sorted(root.rglob(name))
        if found:
            return found[0]
    raise ValueError(
        f"No label file ({' or '.join(LABEL_FILES)}) under {root}. Point SIIM_DATA_DIR at the folder that "
        "holds the downloaded data (see the data chapter), or unset it to use the bundled sample."
    )


def read_labels(csv_path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Read a label CSV into one row per image with a list of RLE strings (empty for "-1").

    Accepts both headers ("ImageId, EncodedPixels" with its leading space, and "ImageId,EncodedPixels").
    Rows with a missing ImageId or a malformed RLE are left out and described in the returned problem list.
    """
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    table.columns = [column.strip() for column in table.columns]
    if not {"ImageId", "EncodedPixels"} <= set(table.columns):
        raise ValueError(f"{csv_path}: expected columns ImageId and EncodedPixels, found {list(table.columns)}")
    problems, keep = [], []
    for line, (image_id, encoded) in enumerate(zip(table["ImageId"], table["EncodedPixels"]), start=2):
        image_id, encoded = image_id.strip(), encoded.strip()
        try:
            if not image_id:
                raise ValueError("no ImageId")
            rle.parse(encoded)
            keep.append((image_id, encoded))
        except ValueError as error:
            problems.append(f"{Path(csv_path).name} line {line}: {error}; row left out")
    labels = pd.DataFrame(keep, columns=["image_id", "rle"])
    def non_empty(rles):
        return [r for r in rles if r not in (rle.EMPTY, "")]

    grouped = labels.groupby("image_id", sort=True)["rle"].agg(non_empty)
    return grouped.rename("rles").reset_index(), problems


class ScannedIndex(NamedTuple):
    """What ``scan_index`` found: the index of labelled images, and a report of what was left out and why."""

    index: pd.DataFrame
    report: dict[str, int | list[str]]


def load_index(root: str | Path) -> pd.DataFrame:
    """One row per labelled image under ``root``, in either layout of the data: ``scan_index(root).index``.

    Columns: image_id, path, patient_id, sex, age, view_position, has_pneumothorax, rles (list of RLE strings,
    empty for "-1"). What was left out is summarised in one warning; ``scan_index`` returns the full report.
    """
    return scan_index(root).index


def scan_index(root: str | Path) -> ScannedIndex:
    """The index of labelled images under ``root`` (see ``load_index``) and a report of what was left out.

    Images are found at any depth (``dicom-images-train/<study>/<series>/<id>.dcm`` or
    ``stage_2_images/<id>.dcm``). Images without labels (such as the test set), labels without images,
    malformed CSV rows and unreadable files are not errors: they are left out and listed in the report; all
    but the first kind are also summarised in one warning.
    """
    root = Path(root)
    labels, problems = read_labels(find_label_file(root))
    paths = {path.stem: path for path in sorted(root.rglob("*.dcm"))}
    labelled = labels[labels["image_id"].isin(paths)].copy()
    labelled["path"] = labelled["image_id"].map(lambda image_id: str(paths[image_id]))
    metadata = read_metadata(labelled["path"]).drop(columns=["image_id"])
    unreadable = metadata.loc[metadata["error"].notna(), ["path", "error"]]
    index = labelled.merge(metadata[metadata["error"].isna()], on="path")
    index["has_pneumothorax"] = index["rles"].map(bool)
    index = index[["image_id", "path", "patient_id", "sex", "age", "view_position", "has_pneumothorax", "rles"]]
    report = {
        "images": len(paths),
        "labelled images": len(index),
        "images without labels": sorted(set(paths) - set(labels["image_id"])),
        "labels without images": sorted(set(labels["image_id"]) - set(paths)),
        "unreadable files": [f"{p}: {e}" for p, e in zip(unreadable["path"], unreadable["error"])],
        "malformed label rows": problems,
    }
    counts = {k: len(v) for k, v in report.items() if isinstance(v, list) and v and k != "images without labels"}
    if counts:
        left_out = ", ".join(f"{n} {k}" for k, n in counts.items())
        warnings.warn(f"{root}: left out {left_out} (see scan_index's report)", stacklevel=3)
    return ScannedIndex(index.reset_index(drop=True), report)


def unlabelled_images(root: str | Path) -> pd.DataFrame:
    """The DICOM files under ``root`` that the label CSV does not mention (the test images): image_id, path."""
    labels, _ = read_labels(find_label_file(root))
    known = set(labels["image_id"])
    rows = [(p.stem, str(p)) for p in sorted(Path(root).rglob("*.dcm")) if p.stem not in known]
    return pd.DataFrame(rows, columns=["image_id", "path"])


SPLIT_FOLDS = 20  # split_index's unit: 1/20 of the patients, so each fraction is honoured to 2.5 points


def split_index(index: pd.DataFrame, validation_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = 42) -> pd.DataFrame:
    """Add a ``split`` column (train/validation/test): stratified by has_pneumothorax, grouped by patient_id.

    No patient appears in two splits; the same seed gives the same split. scikit-learn's StratifiedGroupKFold
    cuts the patients into 20 folds of about 5 % each (fewer, down to 7, when there are fewer than 20 positive
    images or patients, so each fold can hold positives); the test split takes ``round(20 * test_fraction)`` of
    them, the validation split the next ``round(20 * validation_fraction)``, so each share is within about 2.5
    points of the fraction asked for (within half a fold when there are fewer folds).
    A ValueError says which rows lack a patient_id, or which fractions cannot be honoured.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0 < fraction < 1:
            raise ValueError(f"{name}={fraction} must be between 0 and 1")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(f"validation_fraction + test_fraction = {validation_fraction + test_fraction:g} leaves "
                         "nothing to train on; choose fractions that add up to less than 1 (for example 0.15, 0.15)")
    missing = index["patient_id"].isna() | (index["patient_id"].astype(str).str.strip() == "")
    if missing.any():
        ids = index.loc[missing, "image_id"].tolist() if "image_id" in index else index.index[missing].tolist()
        raise ValueError(f"{missing.sum()} row(s) have no patient_id, so they cannot be kept to one split: "
                         f"{ids[:5]}{' ...' if len(ids) > 5 else ''}. Fill in PatientID or drop those rows.")
    groups = index["patient_id"].astype(str).to_numpy()
    # Each fold should hold positives (fewer folds than positive images); scikit-learn refuses more folds than
    # the larger class has, and a tiny set still gets at least 7 folds (about 15 %), with scikit-learn's warning.
    counts = index["has_pneumothorax"].value_counts()
    folds = min(SPLIT_FOLDS, len(set(groups)), int(counts.max()), max(int(counts.min()), 7))
    test_folds, validation_folds = round(folds * test_fraction), round(folds * validation_fraction)
    if test_folds < 1 or validation_folds < 1 or test_folds + validation_folds >= folds:
        raise ValueError(f"{len(set(groups))} patients cannot be split into validation_fraction={validation_fraction}"
                         f" and test_fraction={test_fraction} with patients kept apart (units of 1/{folds}); "
                         "use more images or other fractions")
    fold_of = np.empty(len(index), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(index, index["has_pneumothorax"], groups=groups)):
        fold_of[held] = fold
    result = index.copy()
    result["split"] = np.where(fold_of < test_folds, "test",
                               np.where(fold_of < test_folds + validation_folds, "validation", "train"))
    return result


def load_example(path: str, rles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one image and the union of its masks at full size: float32 image in [0, 1] and uint8 mask."""
    image = read_image(path)
    return image, rle.decode_union(rles, image.shape)


MEMORY_CACHE_LIMIT = 2 * 2**30  # bytes: a larger cache goes to a temporary file instead of memory
SHUFFLE_BUFFER_LIMIT = 256 * 2**20  # bytes of cached examples that the shuffle buffer may hold
EPOCH_GRAPH_SEED = 1  # the graph seed under which each training epoch is built (see make_dataset)


def cache_bytes_per_example(image_size: int) -> int:
    """What one cached example takes: a uint8 image and a uint8 mask of ``image_size`` x ``image_size``."""
    return 2 * image_size * image_size


def resize_image(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """An (H, W, 1) image at the model's size, as 8-bit values: bilinear resizing with antialiasing, then the
    darkest pixel 0 and the brightest 255. The training pipeline (``make_dataset``) and the exported model
    (``utils.evaluate.export_for_inference``) both prepare images with it."""
    import tensorflow as tf

    image = tf.image.resize(image, (image_size, image_size), "bilinear", antialias=True)
    # Darkest pixel 0, brightest 1 at the training size, as read_image does at full size: shrinking averages
    # the extremes away, and it happens at different steps in the two paths.
    low, high = tf.reduce_min(image), tf.reduce_max(image)
    image = tf.where(high > low, (image - low) / tf.maximum(high - low, 1e-6), tf.zeros_like(image))
    return tf.cast(tf.round(image * 255.0), tf.uint8)


def cache_location(num_examples: int, image_size: int, cache: bool | str | Path = True,
                   key: str = "") -> str | None:
    """Where ``make_dataset`` caches: None (no cache), ``""`` (memory) or a file prefix (disk).

    ``cache=True`` chooses by size: in memory while the set takes at most ``MEMORY_CACHE_LIMIT`` bytes (2 GiB,
    about 4,000 examples at 512 px), otherwise in a new temporary folder (under ``$UNET_BOOK_CACHE_DIR`` if set),
    removed when Python exits. A path caches in a file named from it, ``key`` (what the data holds) and the
    image size, so a later run reuses it only when it would cache exactly the same examples.
    """
    if cache is False or cache is None:
        return None
    if cache is not True:
        return f"{cache}-{image_size}px-{key}" if key else f"{cache}-{image_size}px"
    if num_examples * cache_bytes_per_example(image_size) <= MEMORY_CACHE_LIMIT:
        return ""
    folder = tempfile.mkdtemp(prefix="unet-cache-", dir=os.environ.get("UNET_BOOK_CACHE_DIR"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(Path(folder) / "cache")


def examples_key(paths: list[str], rle_text: list[str]) -> str:
    """A short hash of what a cache would hold: each file's path, size and modification time, and its masks."""
    digest = hashlib.sha256()
    for path, text in zip(paths, rle_text, strict=True):
        try:
            status = os.stat(path)
            stamp = f"{status.st_size}:{status.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"{path}\0{stamp}\0{text}\n".encode())
    return digest.hexdigest()[:16]


def make_dataset(
    index: pd.DataFrame,
    image_size: int,
    batch_size: int,
    training: bool = False,
    cache: bool | str | Path = True,
    seed: int = 42,
    epoch: tf.Variable | int | None = None,
) -> tf.data.Dataset:
    """A tf.data pipeline of (image, mask) batches, each (batch, image_size, image_size, 1) float32.

    read (header and JPEG bytes, or pydicom's pixels, in parallel) -> decode and resize in TensorFlow (bilinear
    for the image; the mask by area, then >= 0.5, so labels stay 0/1 and a pixel is foreground when mostly
    covered) -> uint8 -> cache (in memory, or in a file for a large set, see ``cache_location``: later epochs skip
    DICOM decoding) -> for training: shuffle -> batch -> float32 (image / 255, mask 0/1) -> for training: augment
    image and mask together -> prefetch. The cache holds uint8, a quarter of float32: 0.5 MiB per example at 512 px.

    For training, the order and the augmentation of a pass are a function of ``seed`` and the pass's epoch
    number alone, so a run resumed at epoch 5 sees what an uninterrupted run sees at epoch 5. ``epoch`` says
    which epoch a pass is: a ``tf.Variable`` that a callback sets at the start of each epoch (``train`` does this,
    see ``utils.train.make_callbacks``), a fixed number, or None: then the k-th pass over this dataset object is
    epoch k.
    """
    import tensorflow as tf

    if len(index) == 0:
        raise ValueError("the index is empty: no images to load")
    paths = index["path"].astype(str).tolist()
    rle_text = ["|".join(rles) for rles in index["rles"]]  # tf.data wants flat strings

    def read(path, joined):
        def load(path_bytes, joined_bytes):  # in Python: the header, the JPEG bytes or the pixels, the mask
            path, text = path_bytes.decode(), joined_bytes.decode()
            try:
                found = jpeg_frame(path)
                if found is None:  # not the real data's kind of file: pydicom decodes it
                    pixels = read_image(path)
                    frame, shape, scale = b"", pixels.shape, 1
                else:
                    (frame, shape), pixels = found, np.zeros((0, 0), np.float32)
                    scale = jpeg_scale(shape, image_size)
                mask = rle.decode_union(text.split("|") if text else [], shape)
            except (DicomReadError, ValueError) as error:
                raise ValueError(f"while loading {path}: {error}") from None
            return np.array(frame, dtype=object), pixels[..., None], np.int32(scale), mask[..., None]

        frame, pixels, scale, mask = tf.numpy_function(
            load, [path, joined], [tf.string, tf.float32, tf.int32, tf.uint8], name="read_dicom"
        )
        frame.set_shape([])
        pixels.set_shape([None, None, 1])
        mask.set_shape([None, None, 1])
        # In TensorFlow, in parallel: decode the JPEG bytes (shrunk by `scale`), or take pydicom's pixels.
        image = tf.cond(tf.strings.length(frame) > 0, lambda: decode_jpeg_frame(frame, scale), lambda: pixels)
        size = (image_size, image_size)
        image = resize_image(image, image_size)
        # A pixel of the small mask is foreground when at least half of the full-size pixels it covers are; a sliver
        # narrower than half a small pixel vanishes (chapter 6's exercise 2 measures it against nearest neighbour).
        covered = tf.image.resize(tf.cast(mask, tf.float32), size, "area")
        return image, tf.cast(covered >= 0.5, tf.uint8)

    def to_float(images, masks):
        return tf.cast(images, tf.float32) / 255.0, tf.cast(masks, tf.float32)

    dataset = tf.data.Dataset.from_tensor_slices((paths, rle_text))
    dataset = dataset.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    location = cache_location(len(paths), image_size, cache, key=examples_key(paths, rle_text))
    if location is not None:
        dataset = dataset.cache(location)
    if not training:
        dataset = dataset.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)

    buffer = min(len(paths), max(1, SHUFFLE_BUFFER_LIMIT // cache_bytes_per_example(image_size)))
    augment = augmenter(seed)

    def one_epoch(number):
        # A new shuffle per epoch, seeded by (seed, epoch); then batch, and augment batch i of this epoch with
        # draws seeded by (seed, epoch, i). One augmentation call at a time: each sets the random state it draws.
        # A fixed graph seed for this function, whatever the caller's global seed: the order depends on (seed,
        # epoch) alone. Not 0: TensorFlow compares (graph seed, op seed) with (0, 0), and the op seed is a tensor.
        tf.random.set_seed(EPOCH_GRAPH_SEED)
        order = dataset.shuffle(buffer, seed=seed * 1_000_003 + number, reshuffle_each_iteration=False)
        batches = order.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE).enumerate()
        return batches.map(lambda i, batch: augment(*batch, epoch=number, batch_number=i))

    if epoch is None:
        passes = tf.Variable(-1, dtype=tf.int64, trainable=False)
        current = tf.data.Dataset.from_tensors(0).map(lambda _: passes.assign_add(1))
    elif isinstance(epoch, tf.Variable):
        current = tf.data.Dataset.from_tensors(0).map(lambda _: tf.cast(epoch.read_value(), tf.int64))
    else:
        current = tf.data.Dataset.from_tensors(tf.constant(int(epoch), tf.int64))
    batches_per_epoch = -(-len(paths) // batch_size)  # flat_map hides it; Keras uses it to count the steps
    dataset = current.flat_map(one_epoch).apply(tf.data.experimental.assert_cardinality(batches_per_epoch))
    return dataset.prefetch(tf.data.AUTOTUNE)


def augmenter(seed: int = 42) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    """Keras preprocessing layers applied to image and mask together (geometric) or to the image alone.

    Keras 3 layers accept {"images", "segmentation_masks"}: the same random flip, shift and rotation move both;
    brightness and contrast change only the image. Keras 3.15 samples masks nearest-neighbour, but 3.13 (Colab's)
    interpolates them, so the masks are thresholded at 0.5 afterwards: they are 0/1 on every Keras version.

    Each layer has a seed of its own. Given one seed, every layer would start from the same random state and draw
    the same number per image, so one number would decide the flip, the shift, the angle, the brightness and the
    contrast together. The returned ``augment(images, masks, epoch, batch_number)`` sets each layer's state from
    (its seed, epoch, batch_number) before it draws, so a batch's augmentation does not depend on what ran before.
    Contrast is given as ``(0.1, 0.1)``: a single 0.1 means factors in [1.0, 1.1] only, never lower contrast.
    """
    import keras
    import tensorflow as tf

    layers = [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomRotation(0.03, fill_mode="constant", seed=seed + 2),
        keras.layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=seed + 3),
        keras.layers.RandomContrast((0.1, 0.1), seed=seed + 4),
    ]
    pipeline = keras.Sequential(layers, name="augment")

    def augment(images, masks, epoch=0, batch_number=0):
        # The draws of batch `batch_number` in `epoch` start at counter (epoch * 2**20 + batch_number) * 16: a
        # layer draws at most a few numbers per batch, and an epoch has fewer than 2**20 batches.
        counter = (tf.cast(epoch, tf.int64) * 2**20 + tf.cast(batch_number, tf.int64)) * 16
        for offset, layer in enumerate(layers):
            state = layer.generator.state
            state.assign(tf.cast(tf.stack([tf.constant(seed + offset, tf.int64), counter]), state.dtype))
        out = pipeline({"images": images, "segmentation_masks": masks}, training=True)
        binary_masks = tf.cast(out["segmentation_masks"] > 0.5, masks.dtype)
        return tf.clip_by_value(out["images"], 0.0, 1.0), binary_masks

    return augment


def example_radiograph(image_size: int, positive: bool = True, position: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One radiograph and its mask from the data the chapters use, resized: two (size, size) float32 arrays.

    For pictures in the architecture chapters: the real data when SIIM_DATA_DIR holds it, else the sample.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(data_root().path)
    chosen = index[index["has_pneumothorax"] == positive].iloc[[position]]
    image, mask = next(iter(make_dataset(chosen, image_size, batch_size=1, cache=False)))
    return image.numpy()[0, ..., 0], mask.numpy()[0, ..., 0]
