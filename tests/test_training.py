"""Losses, metrics, post-processing, submission and the training entry point."""
import keras
import numpy as np
import pandas as pd
import pytest

from utils import evaluate, rle
from utils.losses import CompetitionScore, PositiveDice, bce_dice_loss, dice_loss, hard_dice, metrics


def masks_and_predictions():
    true = np.zeros((2, 16, 16, 1), "float32")
    true[1, 2:14, 2:14] = 1  # image 0 empty, image 1 a large square
    pred = np.zeros_like(true)
    pred[0] = 0.01  # a little noise on the empty image
    pred[1, 2:14, 2:14] = 0.9
    return true, pred


def test_dice_loss_is_per_image_and_safe_for_empty_masks():
    empty = np.zeros((1, 8, 8, 1), "float32")
    assert float(dice_loss(empty, empty)[0]) == pytest.approx(0.0)
    full = np.ones((1, 8, 8, 1), "float32")
    assert float(dice_loss(full, full)[0]) == pytest.approx(0.0, abs=1e-6)
    true, pred = masks_and_predictions()
    per_image = dice_loss(true, pred).numpy()
    assert per_image.shape == (2,) and per_image[0] > 0.5 and per_image[1] < 0.1
    # keras.losses.Dice pools the batch into one sum: the noisy empty image hardly counts there
    pooled = float(keras.losses.Dice()(true, pred))
    assert pooled < 0.1 < float(np.mean(per_image))


def test_hard_dice_and_the_competition_rule():
    true, pred = masks_and_predictions()
    assert np.allclose(hard_dice(true, pred).numpy(), [1.0, 1.0])  # empty/empty counts 1
    assert float(hard_dice(true[1:], np.zeros_like(pred[1:]))[0]) == 0.0  # missed everything
    score, positive = CompetitionScore(), PositiveDice()
    wrong = pred.copy()
    wrong[0, :4, :4] = 0.8  # a false positive on the empty image
    score.update_state(true, wrong)
    positive.update_state(true, wrong)
    assert float(score.result()) == pytest.approx(0.5) and float(positive.result()) == pytest.approx(1.0)


def test_model_with_custom_losses_and_metrics_reloads(tmp_path):
    from utils.model import build_unet

    model = build_unet("compact", 32)
    model.compile(optimizer="adam", loss=bce_dice_loss, metrics=metrics())
    true, pred = masks_and_predictions()
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    y = np.zeros((2, 32, 32, 1), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert np.array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
    assert reloaded.evaluate(x, y, verbose=0, return_dict=True).keys() == model.evaluate(x, y, verbose=0, return_dict=True).keys()


def test_postprocess_drops_small_components():
    probability = np.zeros((20, 20), "float32")
    probability[1:3, 1:3] = 0.9  # 4 pixels
    probability[10:18, 10:18] = 0.9  # 64 pixels
    assert evaluate.postprocess(probability, 0.5, 0).sum() == 68
    assert evaluate.postprocess(probability, 0.5, 10).sum() == 64
    assert evaluate.postprocess(probability, 0.95, 0).sum() == 0


def test_tuning_table_is_sorted_and_complete():
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 16, 16), "float32")
    masks[0, 4:10, 4:10] = 1
    probabilities = np.clip(masks + rng.normal(0, 0.2, masks.shape), 0, 1).astype("float32")
    table = evaluate.tune_postprocessing(probabilities, masks, thresholds=(0.5, 0.9), min_areas=(0, 5))
    assert len(table) == 4 and table["score"].is_monotonic_decreasing
    assert table.loc[0, "score"] == evaluate.score(probabilities, masks, table.loc[0, "threshold"], table.loc[0, "min_area"])


@pytest.fixture(scope="module")
def tiny_sample(tmp_path_factory):
    from utils.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("tiny"), num_train=16, num_test=2, seed=3)


def test_submission_round_trip(tiny_sample, tmp_path):
    from utils.data import unlabelled_images
    from utils.model import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet("compact", 32)
    images = unlabelled_images(tiny_sample)
    assert len(images) == 2
    submission = evaluate.write_submission(model, images, 32, tmp_path / "submission.csv", threshold=0.5)
    written = pd.read_csv(tmp_path / "submission.csv", dtype=str)
    assert list(written.columns) == ["ImageId", "EncodedPixels"] and sorted(written["ImageId"]) == sorted(images["image_id"])
    for encoded in written["EncodedPixels"]:
        assert rle.encode(rle.decode(encoded, (1024, 1024))) == encoded
    assert submission.equals(written)


def test_training_entry_point_runs_and_writes_its_files(tiny_sample, tmp_path, capsys):
    from utils import train

    train.main(["--data", str(tiny_sample), "--epochs", "2", "--image-size", "32", "--batch-size", "4",
                "--run-dir", str(tmp_path / "run")])
    assert (tmp_path / "run" / "best.keras").exists()
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert list(log["epoch"]) == [0, 1] and "val_competition_score" in log
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "CPU only; mixed precision off" in out


def test_device_configuration_on_cpu():
    from utils.train import configure_device

    try:
        assert configure_device() == {"device": "CPU only", "mixed_precision": False, "jit_compile": False}
        assert configure_device(mixed_precision=True)["mixed_precision"]
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_unknown_loss_is_rejected():
    from utils.model import build_unet
    from utils.train import compile_model

    with pytest.raises(ValueError, match="loss='l1'"):
        compile_model(build_unet("compact", 32), loss="l1")


def test_min_area_turns_specks_into_empty_predictions():
    true = np.zeros((1, 16, 16, 1), "float32")
    speck = true.copy()
    speck[0, 3, 3] = 0.9  # one stray pixel on an empty image
    assert float(hard_dice(true, speck)[0]) == 0.0
    assert float(hard_dice(true, speck, min_area=2)[0]) == 1.0
    positive = true.copy()
    positive[0, 2:10, 2:10] = 1
    assert float(hard_dice(positive, positive, min_area=2)[0]) == 1.0
    assert float(hard_dice(positive, positive, min_area=100)[0]) == 0.0  # a real region below min_area is lost
