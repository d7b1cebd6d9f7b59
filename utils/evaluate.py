"""Evaluation and inference: per-image scores, post-processing tuned on validation, and a submission file.

Two post-processing rules: ``postprocess`` thresholds and removes small connected regions; ``triplet_postprocess``
is the 1st-place SIIM-ACR rule, which first decides per image whether there is a pneumothorax at all.
``predict_tiled`` is the paper's overlap-tile inference for images larger than the model's input.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import ndimage

from utils import rle
from utils.data import make_dataset, resize_image
from utils.dicom import read_image
from utils.metrics import dice_per_image


def predict(model: keras.Model, dataset: tf.data.Dataset, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and true masks for a (non-shuffled) dataset, as (N, H, W) float32 arrays.

    ``flip=True`` is horizontal-flip test-time augmentation, as most of the winning SIIM-ACR solutions used it:
    each image is also predicted mirrored left to right, that prediction is mirrored back, and the two are
    averaged. It costs one more forward pass; whether it helps is measured on validation (``tune_tta``).
    """
    probabilities, masks = [], []
    for images, batch_masks in dataset:
        predicted = np.asarray(model.predict_on_batch(images), np.float32)
        if flip:
            mirrored = np.asarray(model.predict_on_batch(tf.reverse(images, axis=[2])), np.float32)
            predicted = (predicted + mirrored[:, :, ::-1]) / 2
        probabilities.append(predicted[..., 0])
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


TRIPLET_REFERENCE_SIZE = 1024  # the write-up's minimum areas are pixels of a 1024 x 1024 image
TRIPLET_VALIDATION = (0.75, 2000, 0.3)  # (top, min_area, bottom) the 1st-place write-up chose on validation ...
TRIPLET_PUBLIC_LB = (0.7, 600, 0.3)  # ... and on the public leaderboard


def triplet_postprocess(probabilities: np.ndarray, top: float = 0.75, min_area: float = 2000,
                        bottom: float = 0.3, reference_size: int = TRIPLET_REFERENCE_SIZE) -> np.ndarray:
    """The 1st-place solution's "triplet" thresholding: decide per image, then draw the mask.

    1. Count the pixels above ``top``. If there are fewer than ``min_area`` (scaled from a ``reference_size``
       square image to this one: 2000 pixels at 1024 px are 2000 * (64 / 1024)**2, about 8, at 64 px), the
       image is called empty and its whole mask is 0.
    2. Otherwise the mask is every pixel above ``bottom`` (a lower threshold, so the outline is generous).

    Args:
        probabilities: one (H, W) probability map or a stack (N, H, W) (a trailing channel axis of 1 is dropped).
        top, min_area, bottom: the triplet; the write-up gives (0.75, 2000, 0.3) on validation and (0.7, 600, 0.3)
            on the public leaderboard (``TRIPLET_VALIDATION``, ``TRIPLET_PUBLIC_LB``).
        reference_size: the side of the square image that ``min_area`` is counted on.

    Returns uint8 0/1 masks of the input's shape (without the channel axis).

    Raises:
        ValueError: if the thresholds are outside [0, 1] or ``bottom`` > ``top``, ``min_area`` < 0, or the input is
            not (H, W) or (N, H, W).
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim in (3, 4) and probabilities.shape[-1] == 1:
        probabilities = probabilities[..., 0]
    if probabilities.ndim not in (2, 3):
        raise ValueError(f"probabilities have shape {probabilities.shape}; pass (H, W) or (N, H, W) maps")
    if not 0 <= bottom <= top <= 1:
        raise ValueError(f"bottom={bottom}, top={top}: need 0 <= bottom <= top <= 1 (the write-up: 0.3 and 0.75)")
    if min_area < 0 or reference_size <= 0:
        raise ValueError(f"min_area={min_area}, reference_size={reference_size}: use min_area >= 0, size > 0")
    height, width = probabilities.shape[-2:]
    scaled_area = min_area * height * width / reference_size**2
    confident = (probabilities > top).sum(axis=(-2, -1))
    present = confident >= scaled_area
    if probabilities.ndim == 3:
        present = present[:, None, None]
    return ((probabilities > bottom) & present).astype(np.uint8)


def triplet_score(probabilities: np.ndarray, masks: np.ndarray, top: float = 0.75, min_area: float = 2000,
                  bottom: float = 0.3) -> float:
    """The competition score (mean per-image Dice) after ``triplet_postprocess``."""
    return float(np.mean(dice_per_image(masks, triplet_postprocess(probabilities, top, min_area, bottom)).numpy()))


def tune_triplet(probabilities: np.ndarray, masks: np.ndarray, tops: tuple[float, ...] = (0.6, 0.7, 0.75, 0.8, 0.9),
                 min_areas: tuple[float, ...] = (0, 600, 1000, 2000, 3000),
                 bottoms: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5)) -> pd.DataFrame:
    """The competition score for every (top, min_area, bottom) triplet with bottom <= top: one row each, best first.

    ``min_area`` is in pixels of a 1024 x 1024 image, as in the write-up. Tune on validation, report on test.
    """
    rows = [{"top": t, "min_area": a, "bottom": b, "score": triplet_score(probabilities, masks, t, a, b)}
            for t in tops for a in min_areas for b in bottoms if b <= t]
    return pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def predict_tiled(model: keras.Model, image: np.ndarray, tile: int, margin: int, batch_size: int = 8) -> np.ndarray:
    """Overlap-tile inference (the paper's Figure 2): predict a large image tile by tile and stitch the tiles.

    The image is mirrored by ``margin`` pixels at every border (``np.pad(mode="symmetric")``) and padded up to a
    multiple of ``tile``. The *output* tiles, ``tile`` x ``tile``, do not overlap and cover the image seamlessly;
    each is predicted from an *input* tile ``margin`` pixels larger on every side, so the input tiles overlap.
    The model sees ``tile + 2 * margin`` pixels square, and only the centre of its output is kept.

    With "same" padding the centre equals a whole-image prediction wherever the receptive field fits inside the
    margin, and when ``tile`` and ``margin`` are multiples of 2**depth, so that every tile's pooling grid lines
    up with the whole image's. Near the image's borders the two differ: mirrored context against zero padding.

    Args:
        model: a model mapping (batch, s, s, C) to (batch, s, s, K) with s = tile + 2 * margin (or any size).
        image: (H, W) or (H, W, C) array.
        tile: side of the output tiles, in pixels.
        margin: context added on each side of a tile, in pixels.
        batch_size: tiles per call of the model.

    Returns the stitched (H, W, K) prediction as float32.

    Raises:
        ValueError: if the image is not 2-D or 3-D, tile or margin is not positive / non-negative, the margin is
            larger than the image (it cannot be mirrored), or the model's input size is not tile + 2 * margin.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image has shape {image.shape}; pass (H, W) or (H, W, C)")
    if tile <= 0 or margin < 0:
        raise ValueError(f"tile={tile}, margin={margin}: use tile > 0 and margin >= 0")
    height, width = image.shape[:2]
    if margin > min(height, width):
        raise ValueError(f"margin={margin} is larger than the image ({height} x {width}); use a smaller margin")
    size = tile + 2 * margin
    expected = model.input.shape[1:3]
    if any(side is not None and side != size for side in expected):
        raise ValueError(f"the model takes {tuple(expected)} inputs, but tile + 2 * margin = {size}; build it for "
                         f"{size} px, or choose tile and margin to match")
    rows, columns = -(-height // tile), -(-width // tile)
    padded = np.pad(image, ((margin, margin + rows * tile - height), (margin, margin + columns * tile - width),
                            (0, 0)), mode="symmetric")
    corners = [(r * tile, c * tile) for r in range(rows) for c in range(columns)]
    outputs = []
    for start in range(0, len(corners), batch_size):
        batch = np.stack([padded[y:y + size, x:x + size] for y, x in corners[start:start + batch_size]])
        outputs.append(keras.ops.convert_to_numpy(model(batch, training=False)))
    predictions = np.concatenate(outputs)
    stitched = np.zeros((rows * tile, columns * tile, predictions.shape[-1]), np.float32)
    for (y, x), prediction in zip(corners, predictions):
        stitched[y:y + tile, x:x + tile] = prediction[margin:margin + tile, margin:margin + tile]
    return stitched[:height, :width]


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


def tune_tta(model: keras.Model, dataset: tf.data.Dataset) -> pd.DataFrame:
    """Flip test-time augmentation, decided on validation together with the post-processing.

    For each of no TTA and flip TTA: predict ``dataset`` (the validation split), tune the component rule on it
    (``tune_postprocessing``) and keep its best score. One row each, best first: ``flip``, ``score``,
    ``threshold``, ``min_component_area``. Use the first row's choice on the test split, and report the other
    row's test score beside it.
    """
    rows = []
    for flip in (False, True):
        probabilities, masks = predict(model, dataset, flip=flip)
        best = tune_postprocessing(probabilities, masks).iloc[0]
        rows.append({"flip": flip, "score": float(best["score"]), "threshold": float(best["threshold"]),
                     "min_component_area": int(best["min_component_area"])})
    return pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def write_submission(model: keras.Model, images: pd.DataFrame, image_size: int, path: str | Path,
                     threshold: float = 0.5, min_component_area: int = 0, batch_size: int = 8,
                     triplet: tuple[float, float, float] | None = None, flip: bool = False) -> pd.DataFrame:
    """Predict ``images`` (columns image_id, path), resize to each original size, encode, write the CSV.

    The file has the competition's columns ``ImageId,EncodedPixels``, "-1" for an empty mask, and one row per
    image. ``min_component_area`` is in pixels at the model's resolution and is scaled to the original size.
    With ``triplet=(top, min_area, bottom)`` the masks come from ``triplet_postprocess`` instead (``min_area`` in
    pixels of a 1024 x 1024 image), and ``threshold`` and ``min_component_area`` are not used. ``flip=True``
    predicts with flip test-time augmentation (``predict``).
    """
    frame = images.assign(rles=[[] for _ in range(len(images))])
    dataset = make_dataset(frame, image_size, batch_size, cache=False)
    probabilities, _ = predict(model, dataset, flip=flip)
    rows = []
    for image_id, image_path, probability in zip(frame["image_id"], frame["path"], probabilities):
        height, width = read_image(image_path).shape
        full = tf.image.resize(probability[..., None], (height, width), "bilinear").numpy()[..., 0]
        scaled_area = int(round(min_component_area * height * width / image_size**2))
        if triplet is not None:
            mask = triplet_postprocess(full, *triplet)
        else:
            mask = postprocess(full, threshold, scaled_area)
        rows.append((image_id, rle.encode(mask)))
    submission = pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"])
    submission.to_csv(path, index=False)
    return submission


def preprocess(pixels: tf.Tensor, image_size: int) -> tf.Tensor:
    """A whole radiograph's pixels, (H, W) as ``utils.dicom.read_image`` returns them, as the model's input
    (1, size, size, 1): the training pipeline's resize with antialiasing, darkest pixel 0 and brightest 1, and
    its 8-bit rounding (``utils.data.resize_image``, which ``make_dataset`` uses)."""
    image = resize_image(tf.cast(pixels, tf.float32)[..., None], image_size)
    return tf.cast(image, tf.float32)[None] / 255.0


def export_for_inference(model: keras.Model, path: str | Path, triplet: tuple[float, float, float]) -> Path:
    """Write a TensorFlow SavedModel that segments a radiograph without this book's code: its ``segment`` takes
    the pixels of one image, (H, W) float32 at any size, and returns the 0/1 ``mask`` (uint8) at that size, after
    the triplet rule ``(top, min_area, bottom)`` (``triplet_postprocess``), and the ``probability`` map.

    Load it anywhere TensorFlow runs: ``loaded = tf.saved_model.load(path)``, then ``loaded.segment(pixels)`` (keep
    ``loaded``: it owns the variables); encode the mask with
    ``utils.rle.encode`` (or the competition's own encoder) for a submission.
    """
    top, min_area, bottom = (float(v) for v in triplet)
    if not 0 <= bottom <= top <= 1 or min_area < 0:
        raise ValueError(f"triplet {triplet}: need 0 <= bottom <= top <= 1 and min_area >= 0")
    size = int(model.input_shape[1])

    def segment(pixels):
        probability = tf.cast(model(preprocess(pixels, size), training=False), tf.float32)
        shape = tf.shape(pixels)
        full = tf.image.resize(probability, shape[:2], "bilinear")[0, ..., 0]
        scaled_area = min_area * tf.cast(shape[0] * shape[1], tf.float32) / TRIPLET_REFERENCE_SIZE**2
        present = tf.cast(tf.reduce_sum(tf.cast(full > top, tf.int32)), tf.float32) >= scaled_area
        mask = tf.logical_and(full > bottom, present)
        return {"mask": tf.cast(mask, tf.uint8), "probability": full}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("segment", segment, input_signature=[tf.TensorSpec([None, None], tf.float32)])
    archive.write_out(str(path), verbose=False)
    return Path(path)


def choose_postprocessing(probabilities: np.ndarray, masks: np.ndarray) -> dict:
    """The better of the component rule and the triplet rule on ``probabilities`` (the validation split)."""
    component = tune_postprocessing(probabilities, masks).iloc[0]
    triplet = tune_triplet(probabilities, masks).iloc[0]
    if triplet["score"] > component["score"]:
        return {"rule": "triplet", "score": float(triplet["score"]),
                "triplet": tuple(float(triplet[k]) for k in ("top", "min_area", "bottom"))}
    return {"rule": "component", "score": float(component["score"]), "threshold": float(component["threshold"]),
            "min_component_area": int(component["min_component_area"])}


def apply_postprocessing(probabilities: np.ndarray, choice: dict) -> np.ndarray:
    """The masks ``choice`` (from ``choose_postprocessing``) draws from ``probabilities``."""
    if choice["rule"] == "triplet":
        return triplet_postprocess(probabilities, *choice["triplet"])
    return np.stack([postprocess(p, choice["threshold"], choice["min_component_area"]) for p in probabilities])


def evaluate_run(run_dir: str | Path, root: str | Path, config=None, submission: str | Path | None = None) -> dict:
    """Score a finished (or interrupted) training run's ``best.keras`` without training: chapter 7's evaluation.

    The split is the one ``utils.train.train`` made (``prepare_data`` with ``config``'s seed and sample count),
    the image size is the model's own. On the validation split, with and without flip test-time augmentation,
    the post-processing is tuned (the component rule and the triplet rule, the better one kept); the better of
    the two on validation is chosen. The test split is scored with both, beside the all-empty baseline, so the
    effect of TTA is reported, not assumed. The submission for the unlabelled images under ``root`` is written
    with the chosen rule (and TTA) to ``submission`` (default ``run_dir/submission.csv``), the figures to
    ``run_dir/evaluation.json``.
    """
    import dataclasses
    import json

    from utils.config import get_config
    from utils.data import unlabelled_images
    from utils.train import prepare_data

    run_dir = Path(run_dir)
    if not (run_dir / "best.keras").exists():
        raise FileNotFoundError(f"{run_dir / 'best.keras'} is missing: train first (python -m utils.train "
                                f"--run-dir {run_dir}), or point --run-dir at the folder that holds best.keras")
    model = keras.models.load_model(run_dir / "best.keras")
    config = dataclasses.replace(config or get_config(), image_size=int(model.input_shape[1]))
    splits, _, _ = prepare_data(root, config)
    split = {name: splits[splits["split"] == name] for name in ("validation", "test")}
    data = {name: make_dataset(rows, config.image_size, config.batch_size) for name, rows in split.items()}
    by_tta = {}
    for flip in (False, True):
        choice = choose_postprocessing(*predict(model, data["validation"], flip=flip))
        probabilities, masks = predict(model, data["test"], flip=flip)
        test_score = float(np.mean(dice_per_image(masks, apply_postprocessing(probabilities, choice)).numpy()))
        by_tta["flip" if flip else "none"] = {**choice, "validation_score": choice.pop("score"),
                                              "test_score": test_score}
    chosen = max(by_tta, key=lambda name: by_tta[name]["validation_score"])  # ties: no TTA, the cheaper
    best = by_tta[chosen]
    result = {
        "run_dir": str(run_dir), "image_size": config.image_size, "data": str(root), "tta": chosen,
        "rule": {best["rule"]: {k: v for k, v in best.items() if k not in ("rule", "validation_score", "test_score")}},
        "validation_score": best["validation_score"], "test_score": best["test_score"], "by_tta": by_tta,
        "test_all_empty_baseline": float(1 - split["test"]["has_pneumothorax"].mean()),
        "test_images": len(split["test"]), "test_positive": int(split["test"]["has_pneumothorax"].sum()),
    }
    unlabelled = unlabelled_images(root)
    if len(unlabelled):
        path = Path(submission) if submission else run_dir / "submission.csv"
        write_submission(model, unlabelled, config.image_size, path, best.get("threshold", 0.5),
                         best.get("min_component_area", 0), config.batch_size, triplet=best.get("triplet"),
                         flip=chosen == "flip")
        result.update(submission=str(path), submission_rows=len(unlabelled))
    (run_dir / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.evaluate --run-dir RUN``: score RUN/best.keras and write its submission, no training."""
    import argparse

    from utils.source import data_root

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--run-dir", required=True, help="the folder of a run of utils.train (holds best.keras)")
    parser.add_argument("--data", default=None, help="data folder (default: $SIIM_DATA_DIR, else the bundled sample)")
    parser.add_argument("--submission", default=None, help="where to write the CSV (default: RUN/submission.csv)")
    args = parser.parse_args(argv)
    root = Path(args.data) if args.data else data_root().path
    result = evaluate_run(args.run_dir, root, submission=args.submission)
    (name, values), = result["rule"].items()
    tta = "with flip TTA" if result["tta"] == "flip" else "without TTA"
    other = result["by_tta"]["none" if result["tta"] == "flip" else "flip"]
    other_tta = "without" if result["tta"] == "flip" else "with flip"
    print(f"{args.run_dir}: {result['image_size']} px; chosen on validation: {tta}, {name} rule {values} "
          f"({result['validation_score']:.4f}). Test: {result['test_score']:.4f} ({other['test_score']:.4f} "
          f"{other_tta} TTA), against {result['test_all_empty_baseline']:.4f} for predicting nothing "
          f"({result['test_positive']} positive of {result['test_images']} images).")
    if "submission" in result:
        print(f"Submission: {result['submission']} ({result['submission_rows']} rows).")

if __name__ == "__main__":
    main()
