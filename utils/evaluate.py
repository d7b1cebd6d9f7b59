"""Evaluation and inference: per-image scores, post-processing tuned on validation, and a submission file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from utils import rle


def predict(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and true masks for a (non-shuffled) dataset, as (N, H, W) float32 arrays."""
    probabilities, masks = [], []
    for images, batch_masks in dataset:
        probabilities.append(model.predict_on_batch(images)[..., 0])
        masks.append(batch_masks.numpy()[..., 0])
    return np.concatenate(probabilities).astype(np.float32), np.concatenate(masks)


def dice_per_image(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Hard Dice per image of binary masks (N, H, W); 1 where both are empty (the competition's rule)."""
    predicted, true = predicted.reshape(len(predicted), -1) > 0, true.reshape(len(true), -1) > 0
    intersection = (predicted & true).sum(1)
    total = predicted.sum(1) + true.sum(1)
    return np.where(total == 0, 1.0, 2.0 * intersection / np.maximum(total, 1))


def postprocess(probability: np.ndarray, threshold: float = 0.5, min_area: int = 0) -> np.ndarray:
    """Threshold one probability map and drop connected components smaller than ``min_area`` pixels."""
    mask = probability > threshold
    if min_area > 0 and mask.any():
        labels, count = ndimage.label(mask)
        areas = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        mask = np.isin(labels, 1 + np.flatnonzero(areas >= min_area))
    return mask.astype(np.uint8)


def score(probabilities: np.ndarray, masks: np.ndarray, threshold: float = 0.5, min_area: int = 0) -> float:
    """The competition score (mean per-image Dice) after post-processing."""
    predicted = np.stack([postprocess(p, threshold, min_area) for p in probabilities])
    return float(dice_per_image(predicted, masks).mean())


def tune_postprocessing(probabilities, masks, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7), min_areas=(0, 10, 25, 50, 100)) -> pd.DataFrame:
    """The competition score for every (threshold, min_area) pair: a table with one row per pair, best first."""
    rows = [{"threshold": t, "min_area": a, "score": score(probabilities, masks, t, a)} for t in thresholds for a in min_areas]
    return pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def write_submission(model, images: pd.DataFrame, image_size: int, path: str | Path, threshold: float = 0.5,
                     min_area: int = 0, batch_size: int = 8) -> pd.DataFrame:
    """Predict ``images`` (columns image_id, path), resize to each original size, encode, write the CSV.

    The file has the competition's columns ``ImageId,EncodedPixels``, "-1" for an empty mask, and one row per
    image. ``min_area`` is in pixels at the model's resolution and is scaled to the original size.
    """
    import tensorflow as tf

    from utils.data import make_dataset
    from utils.dicom import read_image

    frame = images.assign(rles=[[] for _ in range(len(images))])
    dataset = make_dataset(frame, image_size, batch_size, cache=False)
    probabilities, _ = predict(model, dataset)
    rows = []
    for image_id, image_path, probability in zip(frame["image_id"], frame["path"], probabilities):
        height, width = read_image(image_path).shape
        full = tf.image.resize(probability[..., None], (height, width), "bilinear").numpy()[..., 0]
        scaled_area = int(round(min_area * height * width / image_size**2))
        rows.append((image_id, rle.encode(postprocess(full, threshold, scaled_area))))
    submission = pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"])
    submission.to_csv(path, index=False)
    return submission
