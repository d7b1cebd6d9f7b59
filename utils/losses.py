"""Losses and metrics for binary segmentation, registered so that a saved ``.keras`` model reloads.

All take ``y_true`` (0/1 masks) and ``y_pred`` (probabilities from the sigmoid head), shaped (batch, H, W, 1).
Dice-type quantities are computed *per image* and then averaged: ``keras.losses.Dice`` instead pools the whole
batch into one sum, which lets large masks drown small ones and gives empty images no say at all.
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "unet_book"


def _per_image_sums(y_true, y_pred):
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    return ops.sum(y_true * y_pred, axis=axes), ops.sum(y_true, axis=axes), ops.sum(y_pred, axis=axes)


@keras.saving.register_keras_serializable(package=PACKAGE)
def dice_loss(y_true, y_pred, smooth: float = 1.0):
    """1 - soft Dice, per image, smoothed: an empty mask predicted empty costs 0, not 0/0."""
    intersection, true_sum, pred_sum = _per_image_sums(y_true, ops.cast(y_pred, "float32"))
    return 1.0 - (2.0 * intersection + smooth) / (true_sum + pred_sum + smooth)


@keras.saving.register_keras_serializable(package=PACKAGE)
def bce_loss(y_true, y_pred):
    """Binary cross-entropy averaged over the pixels of each image."""
    y_pred = ops.cast(y_pred, "float32")
    per_pixel = keras.losses.binary_crossentropy(ops.cast(y_true, "float32"), y_pred)
    return ops.mean(per_pixel, axis=tuple(range(1, len(per_pixel.shape))))


@keras.saving.register_keras_serializable(package=PACKAGE)
def bce_dice_loss(y_true, y_pred):
    """Binary cross-entropy plus per-image soft Dice: the first trains every pixel, the second the overlap."""
    return bce_loss(y_true, y_pred) + dice_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package=PACKAGE)
def focal_dice_loss(y_true, y_pred):
    """Focal loss (Lin et al., 2017; Keras' BinaryFocalCrossentropy, gamma=2) plus per-image soft Dice."""
    focal = keras.losses.binary_focal_crossentropy(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"), gamma=2.0)
    return ops.mean(focal, axis=tuple(range(1, len(focal.shape)))) + dice_loss(y_true, y_pred)


LOSSES = {"bce": bce_loss, "dice": dice_loss, "bce_dice": bce_dice_loss, "focal_dice": focal_dice_loss}


@keras.saving.register_keras_serializable(package=PACKAGE)
def hard_dice(y_true, y_pred, threshold: float = 0.5, min_area: int = 0):
    """Dice of the thresholded prediction, per image; an image with both masks empty scores 1.

    Averaged over images this is the SIIM-ACR competition's score. With ``min_area`` > 0, a prediction with fewer
    foreground pixels than that counts as empty: the simplest post-processing, which keeps a few stray pixels on an
    empty image from turning its score of 1 into 0.
    """
    y_pred = ops.cast(ops.cast(y_pred, "float32") > threshold, "float32")
    intersection, true_sum, pred_sum = _per_image_sums(y_true, y_pred)
    keep = ops.cast(pred_sum >= min_area, "float32")
    intersection, pred_sum = intersection * keep, pred_sum * keep
    total = true_sum + pred_sum
    return ops.where(total == 0, 1.0, 2.0 * intersection / ops.maximum(total, 1.0))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CompetitionScore(keras.metrics.MeanMetricWrapper):
    """Mean over images of hard Dice, with empty-and-empty counted as 1: the SIIM-ACR leaderboard metric."""

    def __init__(self, name="competition_score", threshold: float = 0.5, min_area: int = 0, dtype=None):
        super().__init__(hard_dice, name=name, dtype=dtype, threshold=threshold, min_area=min_area)
        self.threshold, self.min_area = threshold, min_area

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold, "min_area": self.min_area, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositiveDice(keras.metrics.Metric):
    """Mean hard Dice over the images whose true mask is not empty: how well the outlines match."""

    def __init__(self, name="positive_dice", threshold: float = 0.5, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        scores = hard_dice(y_true, y_pred, self.threshold)
        positive = ops.cast(ops.sum(ops.cast(y_true, "float32"), axis=tuple(range(1, len(y_true.shape)))) > 0, "float32")
        self.total.assign_add(ops.sum(scores * positive))
        self.count.assign_add(ops.sum(positive))

    def result(self):
        return ops.where(self.count > 0, self.total / ops.maximum(self.count, 1.0), 0.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold, "dtype": self.dtype}


def default_min_area(image_size: int) -> int:
    """0.2% of the image's pixels: 18 at 96x96, 524 at 512x512, about 2,100 at 1024x1024."""
    return round(0.002 * image_size**2)


def metrics(min_area: int = 0) -> list:
    """The metrics every training run reports; ``min_area`` applies to the competition score (see hard_dice)."""
    return [
        CompetitionScore(min_area=min_area),
        PositiveDice(),
        keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5, name="iou"),
    ]
