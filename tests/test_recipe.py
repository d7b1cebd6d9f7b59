"""The paper's training recipe and the winners' post-processing: weight map, weighted loss, overlap-tile, triplet."""
import keras
import numpy as np
import pytest

from utils.evaluate import predict_tiled, triplet_postprocess, triplet_score, tune_triplet
from utils.losses import weight_map, weighted_bce_loss
from utils.model import UNetConfig, build_unet


def two_close_squares(gap: int = 4) -> np.ndarray:
    """A 64 x 64 mask with two 12 x 12 squares ``gap`` pixels apart (rows 20-31)."""
    mask = np.zeros((64, 64), np.uint8)
    mask[20:32, 10:22] = 1
    mask[20:32, 22 + gap:34 + gap] = 1
    return mask


def test_weight_map_is_highest_in_the_gap_and_w_c_far_away():
    mask = two_close_squares(gap=4)
    weights = weight_map(mask, w0=10, sigma=5)
    count = mask.sum()
    background_weight, foreground_weight = mask.size / (2 * (mask.size - count)), mask.size / (2 * count)
    gap = weights[20:32, 22:26]
    background = np.where(mask == 0, weights, 0)
    assert np.unravel_index(background.argmax(), mask.shape)[1] in range(22, 26)  # its background maximum: the gap
    # in the gap d1 + d2 = 5 (the squares' facing edges are 5 pixel centres apart): w_c + 10 exp(-25 / 50)
    assert np.isclose(gap.max(), background_weight + 10 * np.exp(-25 / 50), rtol=1e-5)
    assert np.allclose(weights[mask == 1], foreground_weight)  # no border term on the regions themselves
    assert np.isclose(weights[63, 63], background_weight, rtol=1e-4)  # far away: w_c only
    # the class weights balance the classes: each carries half of the total weight
    assert np.isclose(foreground_weight * count, background_weight * (mask.size - count))


def test_touching_regions_stay_apart_in_a_label_image():
    labels = np.zeros((40, 40), np.int32)
    labels[10:20, 5:20] = 1
    labels[10:20, 20:35] = 2  # touches region 1: as one binary mask they would merge into one region
    assert np.allclose(weight_map(labels > 0, class_weights=(1, 1)), 1.0)  # one region: no border term
    separated = weight_map(labels, class_weights=(1, 1))
    # just above where they touch: 1 pixel to region 1, sqrt(2) to region 2
    assert np.isclose(separated[9, 19], 1 + 10 * np.exp(-((1 + np.sqrt(2)) ** 2) / 50), rtol=1e-5)


def test_weight_map_of_an_empty_mask_is_one_and_bad_input_raises():
    assert np.array_equal(weight_map(np.zeros((8, 8))), np.ones((8, 8), np.float32))
    with pytest.raises(ValueError, match="shape"):
        weight_map(np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="sigma"):
        weight_map(np.zeros((8, 8)), sigma=0)
    with pytest.raises(ValueError, match="negative"):
        weight_map(-np.ones((8, 8)))


def test_weighted_bce_matches_keras_sample_weight():
    rng = np.random.default_rng(0)
    y_true = (rng.random((2, 16, 16, 1)) > 0.7).astype("float32")
    y_pred = rng.uniform(0.05, 0.95, (2, 16, 16, 1)).astype("float32")
    weights = rng.uniform(0.5, 3, (2, 16, 16)).astype("float32")
    ours = float(np.mean(weighted_bce_loss(y_true, y_pred, weights)))
    keras_value = float(keras.losses.BinaryCrossentropy()(y_true, y_pred, sample_weight=weights))
    assert np.isclose(ours, keras_value, rtol=1e-5)
    unweighted = float(np.mean(weighted_bce_loss(y_true, y_pred, np.ones_like(weights))))
    assert np.isclose(unweighted, float(keras.losses.BinaryCrossentropy()(y_true, y_pred)), rtol=1e-5)


def test_triplet_decides_per_image_then_draws_with_the_bottom_threshold():
    probabilities = np.zeros((2, 64, 64), np.float32)
    probabilities[0, 10:20, 10:20] = 0.9  # 100 confident pixels ...
    probabilities[0, 8:22, 8:22] = np.maximum(probabilities[0, 8:22, 8:22], 0.4)  # ... inside a 0.4 halo
    probabilities[1, 10:13, 10:13] = 0.9  # only 9 confident pixels
    # 2000 pixels at 1024 px are 2000 / 256 = 7.8 at 64 px; 20000 are 78
    masks = triplet_postprocess(probabilities, top=0.75, min_area=2000, bottom=0.3)
    assert masks.dtype == np.uint8 and masks.shape == (2, 64, 64)
    assert masks[0].sum() == 14 * 14  # drawn with the bottom threshold: the halo is included
    assert masks[1].sum() == 9  # 9 >= 7.8 confident pixels: kept
    masks = triplet_postprocess(probabilities, top=0.75, min_area=20000, bottom=0.3)
    assert masks[0].sum() == 14 * 14 and masks[1].sum() == 0  # 9 < 78: the whole image is called empty
    assert np.array_equal(triplet_postprocess(probabilities[0], 0.75, 2000, 0.3), masks[0])  # one (H, W) map


def test_triplet_score_and_tuning():
    truth = np.zeros((2, 32, 32), np.float32)
    truth[0, 4:12, 4:12] = 1
    probabilities = truth * 0.9
    probabilities[1, 0, 0] = 0.9  # a stray pixel on the empty image: removed by a large enough min_area
    assert triplet_score(probabilities, truth, 0.75, 0, 0.3) == 0.5
    assert triplet_score(probabilities, truth, 0.75, 2000, 0.3) == 1.0  # 2000 at 1024 = 2 pixels at 32 px
    table = tune_triplet(probabilities, truth)
    assert table.loc[0, "score"] == 1.0 and (table["bottom"] <= table["top"]).all()


@pytest.mark.parametrize("top, bottom, min_area", [(0.3, 0.5, 10), (1.5, 0.3, 10), (0.7, 0.3, -1)])
def test_triplet_bad_values_raise(top, bottom, min_area):
    with pytest.raises(ValueError, match="bottom|min_area"):
        triplet_postprocess(np.zeros((8, 8)), top, min_area, bottom)


def small_models(tile_input: int, whole: int) -> tuple[keras.Model, keras.Model]:
    """The same small depth-2 U-Net (batch norm, random weights) built for two input sizes."""
    config = UNetConfig((8, 16), 32, (16, 8), batch_norm=True)
    keras.utils.set_random_seed(0)
    whole_model = build_unet(config, whole)
    for layer in whole_model.layers:  # non-trivial batch-norm statistics, so inference mode matters
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([gamma, beta + rng.normal(0, 0.1, beta.shape), rng.normal(0, 0.1, mean.shape),
                               variance * rng.uniform(0.5, 2, variance.shape)])
    tiled_model = build_unet(config, tile_input)
    tiled_model.set_weights(whole_model.get_weights())
    return whole_model, tiled_model


def test_overlap_tile_equals_whole_image_prediction_away_from_the_borders():
    tile, margin, size = 32, 24, 128  # multiples of 2**depth = 4; the receptive field's radius is below 24
    whole_model, tiled_model = small_models(tile + 2 * margin, size)
    image = np.random.default_rng(1).random((size, size)).astype("float32")
    whole = whole_model.predict_on_batch(image[None, ..., None])[0]
    stitched = predict_tiled(tiled_model, image, tile, margin)
    assert stitched.shape == (size, size, 1)
    inner = (slice(margin, size - margin),) * 2
    assert np.max(np.abs(stitched[inner] - whole[inner])) < 1e-5
    # without a margin the tiles' own zero padding shows at every tile edge
    no_margin = predict_tiled(small_models(tile, size)[1], image, tile, 0)
    assert np.max(np.abs(no_margin[inner] - whole[inner])) > 1e-4


def test_overlap_tile_handles_sizes_that_are_not_multiples_and_checks_the_model():
    _, tiled_model = small_models(32 + 2 * 8, 64)
    out = predict_tiled(tiled_model, np.zeros((50, 70), np.float32), 32, 8)
    assert out.shape == (50, 70, 1)
    with pytest.raises(ValueError, match="tile \\+ 2 \\* margin"):
        predict_tiled(tiled_model, np.zeros((64, 64)), 32, 4)
    with pytest.raises(ValueError, match="shape"):
        predict_tiled(tiled_model, np.zeros((1, 2, 64, 64)), 32, 8)
