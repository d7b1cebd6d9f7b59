"""The competition's metric and its relatives, on one per-image Dice that the losses and the evaluation share.

``dice_per_image`` is the one implementation: soft (probabilities) or hard (0/1 masks), smoothed or not, on Keras
tensors or numpy arrays. ``losses.dice_loss`` is 1 minus its soft form, ``CompetitionScore`` and ``PositiveDice``
average its hard form over images, and ``evaluate`` scores post-processed masks with it.

Two rules make small predictions empty, and they have two names:
- ``min_predicted_area`` (here): an image whose *total* predicted area is below it counts as predicting nothing;
- ``min_component_area`` (``evaluate.postprocess``): each *connected region* below it is removed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import keras
from keras import ops

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

PACKAGE = "unet_book"  # the registration package: a saved .keras model names its losses and metrics with it
COMPETITION_SCORE = "competition_score"
MONITOR = f"val_{COMPETITION_SCORE}"  # the validation score as logged; runs are chosen by val_loss (RULE)
RULE = "val_loss"  # how good a run is: its lowest validation loss; the checkpoint, the search and the benchmarks
PREDICTED_POSITIVE = "predicted_positive"
Masks: TypeAlias = "tf.Tensor | np.ndarray"  # (batch, height, width[, 1]) masks or probabilities, as tensors or arrays


def dice_per_image(y_true: Masks, y_pred: Masks, smooth: float = 0.0) -> tf.Tensor:
    """Dice of each image, ``(2 |T.P| + smooth) / (|T| + |P| + smooth)``, summed over every axis but the first.

    Args:
        y_true: 0/1 masks, shape (batch, ...).
        y_pred: probabilities (soft Dice) or 0/1 masks (hard Dice), the same shape.
        smooth: added to both sides; 0 gives the competition's rule that an image with both masks empty scores 1.

    Returns a tensor of shape (batch,). Works on Keras tensors and numpy arrays alike (Milletari et al., 2016;
    per image as in the SIIM-ACR metric, where ``keras.losses.Dice`` pools the whole batch).
    """
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, "float32")
    axes = tuple(range(1, len(y_pred.shape)))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    if smooth:
        return (2.0 * intersection + smooth) / (total + smooth)
    return ops.where(total == 0, 1.0, 2.0 * intersection / ops.maximum(total, 1e-7))


@keras.saving.register_keras_serializable(package=PACKAGE)
def hard_dice(y_true: Masks, y_pred: Masks, threshold: float = 0.5, min_predicted_area: int = 0) -> tf.Tensor:
    """Dice of the thresholded prediction, per image; an image with both masks empty scores 1.

    Averaged over images this is the SIIM-ACR competition's score. With ``min_predicted_area`` > 0, a prediction
    with fewer foreground pixels than that in total counts as empty: the simplest post-processing, which keeps a
    few stray pixels on an empty image from turning its score of 1 into 0.
    """
    predicted = ops.cast(ops.cast(y_pred, "float32") > threshold, "float32")
    axes = tuple(range(1, len(predicted.shape)))
    keep = ops.cast(ops.sum(predicted, axis=axes) >= min_predicted_area, "float32")
    return dice_per_image(y_true, predicted * ops.reshape(keep, (-1,) + (1,) * len(axes)))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CompetitionScore(keras.metrics.MeanMetricWrapper):
    """Mean over images of hard Dice, with empty-and-empty counted as 1: the SIIM-ACR leaderboard metric."""

    def __init__(self, name: str = COMPETITION_SCORE, threshold: float = 0.5, min_predicted_area: int = 0,
                 dtype: str | None = None):
        super().__init__(hard_dice, name=name, dtype=dtype, threshold=threshold, min_predicted_area=min_predicted_area)
        self.threshold, self.min_predicted_area = threshold, min_predicted_area

    def get_config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "min_predicted_area": self.min_predicted_area,
                "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositiveDice(keras.metrics.Metric):
    """Mean hard Dice over the images whose true mask is not empty: how well the outlines match.

    Over images that are all empty it is undefined, and reports NaN, not 0; ``count`` holds how many positive
    images it has averaged (as MONAI's ``DiceMetric`` reports NaN with a count of the cases it could score).
    """

    def __init__(self, name: str = "positive_dice", threshold: float = 0.5, dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true: Masks, y_pred: Masks, sample_weight=None) -> None:  # no sample weights
        scores = hard_dice(y_true, y_pred, self.threshold)
        true_area = ops.sum(ops.cast(y_true, "float32"), axis=tuple(range(1, len(y_true.shape))))
        positive = ops.cast(true_area > 0, "float32")
        self.total.assign_add(ops.sum(scores * positive))
        self.count.assign_add(ops.sum(positive))

    def result(self) -> tf.Tensor:
        return ops.where(self.count > 0, self.total / ops.maximum(self.count, 1.0), float("nan"))

    def reset_state(self) -> None:
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PredictedPositive(keras.metrics.MeanMetricWrapper):
    """The share of images the model calls positive: any pixel above ``threshold``, at least ``min_predicted_area``
    in total. Read against the true share: 0 is a model that predicts nothing, near 1 one that marks every image."""

    def __init__(self, name: str = PREDICTED_POSITIVE, threshold: float = 0.5, min_predicted_area: int = 0,
                 dtype: str | None = None):
        super().__init__(_predicted_positive, name=name, dtype=dtype, threshold=threshold,
                         min_predicted_area=min_predicted_area)
        self.threshold, self.min_predicted_area = threshold, min_predicted_area

    def get_config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "min_predicted_area": self.min_predicted_area,
                "dtype": self.dtype}


def _predicted_positive(y_true: Masks, y_pred: Masks, threshold: float = 0.5, min_predicted_area: int = 0):
    predicted = ops.cast(ops.cast(y_pred, "float32") > threshold, "float32")
    area = ops.sum(predicted, axis=tuple(range(1, len(predicted.shape))))
    return ops.cast((area > 0) & (area >= min_predicted_area), "float32")


def failure_mode(predicted_positive: float, nearly_all: float = 0.9) -> str:
    """"predicts nothing", "marks nearly every image" or "": the two ways a run can look good by the score alone.

    ``predicted_positive`` is a run's ``val_predicted_positive`` at its chosen epoch. A model that predicts
    nothing scores the all-empty baseline; one that marks (nearly) every image fails on every empty one.
    """
    if predicted_positive == 0:
        return "predicts nothing"
    if predicted_positive >= nearly_all:
        return "marks nearly every image"
    return ""


def default_min_predicted_area(image_size: int) -> int:
    """0.2% of the image's pixels: 8 at 64x64, 18 at 96x96, 524 at 512x512, about 2,100 at 1024x1024."""
    return round(0.002 * image_size**2)


def metrics(min_predicted_area: int = 0) -> list[keras.metrics.Metric]:
    """The metrics every training run reports; ``min_predicted_area`` applies to the competition score."""
    return [
        CompetitionScore(min_predicted_area=min_predicted_area),
        PositiveDice(),
        PredictedPositive(min_predicted_area=min_predicted_area),
        keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5, name="iou"),
    ]
