"""Losses for binary segmentation, registered so that a saved ``.keras`` model reloads (metrics: ``utils.metrics``).

All take ``y_true`` (0/1 masks) and ``y_pred`` (probabilities from the sigmoid head), shaped (batch, H, W, 1), and
return one loss per image. The Dice term is computed *per image* (``metrics.dice_per_image``) and then averaged:
``keras.losses.Dice`` instead pools the whole batch into one sum, which lets large masks drown small ones and gives
empty images no say at all. Losses add: ``bce_dice_loss`` is ``bce_loss + dice_loss``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import ops

from utils.metrics import PACKAGE, Masks, dice_per_image

if TYPE_CHECKING:
    import tensorflow as tf


@keras.saving.register_keras_serializable(package=PACKAGE)
def dice_loss(y_true: Masks, y_pred: Masks, smooth: float = 1.0) -> tf.Tensor:
    """1 - soft Dice, per image, smoothed: an empty mask predicted empty costs 0, not 0/0."""
    return 1.0 - dice_per_image(y_true, y_pred, smooth=smooth)


@keras.saving.register_keras_serializable(package=PACKAGE)
def bce_loss(y_true: Masks, y_pred: Masks) -> tf.Tensor:
    """Binary cross-entropy averaged over the pixels of each image."""
    y_pred = ops.cast(y_pred, "float32")
    per_pixel = keras.losses.binary_crossentropy(ops.cast(y_true, "float32"), y_pred)
    return ops.mean(per_pixel, axis=tuple(range(1, len(per_pixel.shape))))


@keras.saving.register_keras_serializable(package=PACKAGE)
def bce_dice_loss(y_true: Masks, y_pred: Masks) -> tf.Tensor:
    """Binary cross-entropy plus per-image soft Dice: the first trains every pixel, the second the overlap."""
    return bce_loss(y_true, y_pred) + dice_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package=PACKAGE)
def focal_dice_loss(y_true: Masks, y_pred: Masks) -> tf.Tensor:
    """Focal loss (Lin et al., 2017; Keras' BinaryFocalCrossentropy, gamma=2) plus per-image soft Dice."""
    focal = keras.losses.binary_focal_crossentropy(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"), gamma=2.0)
    return ops.mean(focal, axis=tuple(range(1, len(focal.shape)))) + dice_loss(y_true, y_pred)


LOSSES = {"bce": bce_loss, "dice": dice_loss, "bce_dice": bce_dice_loss, "focal_dice": focal_dice_loss}
