"""Evaluation and inference: per-image scores, post-processing tuned on validation, and a submission file."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import ndimage

from utils import rle
from utils.data import make_dataset
from utils.dicom import read_image
from utils.metrics import dice_per_image


def predict(model: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and true masks for a (non-shuffled) dataset, as (N, H, W) float32 arrays."""
    probabilities, masks = [], []
    for images, batch_masks in dataset:
        probabilities.append(model.predict_on_batch(images)[..., 0])
        masks.append(batch_masks.numpy()[..., 0])
    return np.concatenate(probabilities).astype(np.float32), np.concatenate(masks)


def postprocess(probability: np.ndarray, threshold: float = 0.5, min_component_area: int = 0) -> np.ndarray:
    """Threshold one probability map and remove each connected region smaller than ``min_component_area`` pixels.

    (Not the same rule as ``metrics.hard_dice``'s ``min_predicted_area``, which empties a prediction whose total
    area is small.) Returns a uint8 mask of 0/1.
    """
    mask = probability > threshold
    if min_component_area > 0 and mask.any():
        labels, count = ndimage.label(mask)
        areas = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        mask = np.isin(labels, 1 + np.flatnonzero(areas >= min_component_area))
    return mask.astype(np.uint8)


def score(probabilities: np.ndarray, masks: np.ndarray, threshold: float = 0.5, min_component_area: int = 0) -> float:
    """The competition score (mean per-image Dice, ``metrics.dice_per_image``) after post-processing."""
    predicted = np.stack([postprocess(p, threshold, min_component_area) for p in probabilities])
    return float(np.mean(dice_per_image(masks, predicted).numpy()))


def tune_postprocessing(probabilities: np.ndarray, masks: np.ndarray,
                        thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7),
                        min_component_areas: tuple[int, ...] = (0, 10, 25, 50, 100)) -> pd.DataFrame:
    """The competition score for every (threshold, min_component_area) pair: one row per pair, best first.

    Choose the pair on the validation split and report it on the test split: tuned on test, the score would
    flatter the model.
    """
    rows = [{"threshold": t, "min_component_area": a, "score": score(probabilities, masks, t, a)}
            for t in thresholds for a in min_component_areas]
    return pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def write_submission(model: keras.Model, images: pd.DataFrame, image_size: int, path: str | Path,
                     threshold: float = 0.5, min_component_area: int = 0, batch_size: int = 8) -> pd.DataFrame:
    """Predict ``images`` (columns image_id, path), resize to each original size, encode, write the CSV.

    The file has the competition's columns ``ImageId,EncodedPixels``, "-1" for an empty mask, and one row per
    image. ``min_component_area`` is in pixels at the model's resolution and is scaled to the original size.
    """
    frame = images.assign(rles=[[] for _ in range(len(images))])
    dataset = make_dataset(frame, image_size, batch_size, cache=False)
    probabilities, _ = predict(model, dataset)
    rows = []
    for image_id, image_path, probability in zip(frame["image_id"], frame["path"], probabilities):
        height, width = read_image(image_path).shape
        full = tf.image.resize(probability[..., None], (height, width), "bilinear").numpy()[..., 0]
        scaled_area = int(round(min_component_area * height * width / image_size**2))
        rows.append((image_id, rle.encode(postprocess(full, threshold, scaled_area))))
    submission = pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"])
    submission.to_csv(path, index=False)
    return submission
