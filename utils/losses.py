"""Losses for binary segmentation, registered so that a saved ``.keras`` model reloads (metrics: ``utils.metrics``).

All take ``y_true`` (0/1 masks) and ``y_pred`` (probabilities from the sigmoid head), shaped (batch, H, W, 1), and
return one loss per image. The Dice term is computed *per image* (``metrics.dice_per_image``), smoothed, and then
averaged. ``keras.losses.Dice`` with its default ``axis=None`` instead pools the whole batch into one sum, which lets
large masks drown small ones; an empty image counts only through its false positives in the pooled denominator.
``keras.losses.Dice(axis=(1, 2, 3))`` is per image but unsmoothed: an empty mask then costs 1 whatever is predicted,
with no gradient. Losses add: ``bce_dice_loss`` is ``bce_loss + dice_loss``.

Why probabilities and not logits: the Dice term, the metrics and the evaluation need probabilities anyway, the
head computes in float32 under mixed precision, and with the TensorFlow backend Keras' cross-entropy takes the
logits of a tensor that comes straight from its sigmoid, so a saturated prediction still costs its full loss.
Chapter 5 checks this, and says where ``from_logits=True`` would be the safer choice.

``weight_map`` and ``weighted_bce_loss`` are the paper's weighted cross-entropy (Ronneberger et al., 2015, eq. 2).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import ops
from scipy import ndimage

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


def weight_map(mask: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
               class_weights: tuple[float, float] | None = None) -> np.ndarray:
    """The U-Net paper's per-pixel loss weights, ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))``.

    ``d1`` and ``d2`` are the distances (in pixels, ``scipy.ndimage.distance_transform_edt``) from a background
    pixel to the nearest and the second-nearest region, so the term is large in narrow gaps between two regions
    and vanishes far from them. It is applied to background pixels only: the paper's eq. 2 defines ``w(x)`` at
    every pixel, but the term is meant for the thin background borders that the paper's annotations put between
    touching cells (its Fig. 3d), so this is a common reading rather than the paper's letter. Regions that touch
    with no background between them get no border weight on their contact line. With fewer than two regions the
    term is zero.

    Args:
        mask: a (height, width) mask. A 0/1 (or boolean) mask is split into regions by connectivity
            (``ndimage.label``); an integer label image (0 = background, 1, 2, ... = regions) keeps its regions
            apart even where they touch.
        w0: the weight of the border term (the paper: 10).
        sigma: its width in pixels (the paper: about 5).
        class_weights: (background, foreground) values of ``w_c``. None balances the classes of this mask:
            each class gets ``N / (2 n_class)``, so both carry half of the total weight (1 everywhere when the
            mask is empty or full). For a data set, pass weights computed from its overall class frequencies.

    Returns a float32 (height, width) array.

    Raises:
        ValueError: if ``mask`` is not two-dimensional, has negative values, or ``w0`` or ``sigma`` is not positive.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask has shape {mask.shape}; pass one (height, width) mask, e.g. mask[..., 0]")
    if mask.size and mask.min() < 0:
        raise ValueError(f"mask has negative values (min {mask.min()}); use 0 for background, 1, 2, ... for regions")
    if w0 < 0 or sigma <= 0:
        raise ValueError(f"w0={w0} and sigma={sigma}: use w0 >= 0 and sigma > 0 (the paper: 10 and 5)")
    foreground = mask > 0
    if class_weights is None:
        count = foreground.sum()
        if 0 < count < mask.size:
            class_weights = (mask.size / (2.0 * (mask.size - count)), mask.size / (2.0 * count))
        else:
            class_weights = (1.0, 1.0)
    weights = np.where(foreground, class_weights[1], class_weights[0]).astype(np.float32)
    if set(np.unique(mask)) <= {0, 1}:
        labels, count = ndimage.label(foreground)
    else:
        labels, count = mask.astype(np.int64), int(mask.max())
    present = [region for region in range(1, count + 1) if np.any(labels == region)]
    if len(present) < 2 or w0 == 0:
        return weights
    distances = np.stack([ndimage.distance_transform_edt(labels != region) for region in present])
    nearest_two = np.partition(distances, 1, axis=0)[:2]
    border = w0 * np.exp(-((nearest_two[0] + nearest_two[1]) ** 2) / (2.0 * sigma**2))
    return (weights + np.where(foreground, 0.0, border)).astype(np.float32)


def weighted_bce_loss(y_true: Masks, y_pred: Masks, weights: Masks) -> tf.Tensor:
    """Binary cross-entropy with a weight per pixel (e.g. ``weight_map``), averaged over the pixels of each image.

    The mean over images equals ``keras.losses.BinaryCrossentropy()(y_true, y_pred, sample_weight=weights)``
    with ``weights`` shaped (batch, H, W): what ``fit`` computes when the dataset yields (image, mask, weights).
    """
    per_pixel = keras.losses.binary_crossentropy(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"))
    weights = ops.cast(weights, "float32")
    if len(weights.shape) == len(per_pixel.shape) + 1:
        weights = ops.squeeze(weights, axis=-1)
    weighted = per_pixel * weights
    return ops.mean(weighted, axis=tuple(range(1, len(weighted.shape))))
