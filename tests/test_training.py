"""Losses, metrics, post-processing, submission and the training entry point."""
import keras
import numpy as np
import pandas as pd
import pytest

from utils import evaluate, rle
from utils.losses import bce_dice_loss, dice_loss
from utils.metrics import MONITOR, CompetitionScore, PositiveDice, dice_per_image, hard_dice, metrics
from utils.source import IMAGE_SHAPE


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


def test_positive_dice_without_positive_images_is_nan_with_a_count_of_zero():
    positive = PositiveDice()
    empty = np.zeros((2, 8, 8, 1), "float32")
    positive.update_state(empty, empty)
    assert np.isnan(float(positive.result())) and float(positive.count) == 0.0


def test_one_dice_serves_the_loss_the_metric_and_the_evaluation():
    true, pred = masks_and_predictions()
    assert np.allclose(dice_loss(true, pred).numpy(), 1 - dice_per_image(true, pred, smooth=1.0).numpy())
    assert np.allclose(hard_dice(true, pred).numpy(), dice_per_image(true, pred > 0.5).numpy())
    probabilities, masks = pred[..., 0], true[..., 0]
    assert evaluate.score(probabilities, masks) == pytest.approx(float(np.mean(hard_dice(true, pred).numpy())))
    # numpy in, the same numbers as a reference computed by hand
    predicted, expected = masks.astype(bool), masks.astype(bool)
    expected[1, 2:4] = False  # drop 2 rows of 12 from the 12x12 square
    by_hand = 2 * (predicted[1] & expected[1]).sum() / (predicted[1].sum() + expected[1].sum())  # 240 / 264
    assert np.allclose(dice_per_image(expected, predicted).numpy(), [1.0, by_hand])


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
    reported = reloaded.evaluate(x, y, verbose=0, return_dict=True)
    assert reported.keys() == model.evaluate(x, y, verbose=0, return_dict=True).keys()


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
    table = evaluate.tune_postprocessing(probabilities, masks, thresholds=(0.5, 0.9), min_component_areas=(0, 5))
    assert len(table) == 4 and table["score"].is_monotonic_decreasing
    best = table.loc[0]
    assert best["score"] == evaluate.score(probabilities, masks, best["threshold"], best["min_component_area"])


def test_submission_round_trip(small_sample, tmp_path):
    from utils.data import unlabelled_images
    from utils.model import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet("compact", 32)
    images = unlabelled_images(small_sample)
    assert len(images) == 3
    submission = evaluate.write_submission(model, images, 32, tmp_path / "submission.csv", threshold=0.5)
    written = pd.read_csv(tmp_path / "submission.csv", dtype=str)
    assert list(written.columns) == ["ImageId", "EncodedPixels"]
    assert sorted(written["ImageId"]) == sorted(images["image_id"])
    for encoded in written["EncodedPixels"]:
        assert rle.encode(rle.decode(encoded, IMAGE_SHAPE)) == encoded
    assert submission.equals(written)


# 24 images hold too few positives for the split's stratified folds; the real data has hundreds.
@pytest.mark.filterwarnings("ignore:The least populated class in y:UserWarning")
def test_training_entry_point_runs_and_writes_its_files(small_sample, tmp_path, capsys):
    from utils import train

    train.main(["--data", str(small_sample), "--epochs", "2", "--image-size", "32", "--batch-size", "4",
                "--run-dir", str(tmp_path / "run")])
    assert (tmp_path / "run" / "best.keras").exists()
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert list(log["epoch"]) == [0, 1] and MONITOR in log
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "2 epochs logged. Model of epoch" in out and "lowest val_loss" in out
    assert ("CPU only; mixed precision off" in out) or ("GPU(s)" in out and "mixed precision on" in out)


def test_device_configuration_follows_the_hardware():
    import tensorflow as tf

    from utils.train import configure_device

    gpus = tf.config.list_physical_devices("GPU")
    has_gpu = bool(gpus)
    try:
        setup = configure_device()
        assert (setup.mixed_precision, setup.jit_compile) == (has_gpu, has_gpu)
        assert setup.description.startswith(f"{len(gpus)} GPU(s)" if has_gpu else "CPU only")
        assert keras.mixed_precision.global_policy().name == ("mixed_float16" if has_gpu else "float32")
        assert configure_device(mixed_precision=True).mixed_precision
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_unknown_loss_is_rejected():
    from utils.model import build_unet
    from utils.train import compile_model

    with pytest.raises(ValueError, match="loss='l1'"):
        compile_model(build_unet("compact", 32), loss="l1")


def test_min_predicted_area_turns_specks_into_empty_predictions():
    true = np.zeros((1, 16, 16, 1), "float32")
    speck = true.copy()
    speck[0, 3, 3] = 0.9  # one stray pixel on an empty image
    assert float(hard_dice(true, speck)[0]) == 0.0
    assert float(hard_dice(true, speck, min_predicted_area=2)[0]) == 1.0
    positive = true.copy()
    positive[0, 2:10, 2:10] = 1
    assert float(hard_dice(positive, positive, min_predicted_area=2)[0]) == 1.0
    assert float(hard_dice(positive, positive, min_predicted_area=100)[0]) == 0.0  # a real region below it is lost


def test_compile_model_creates_the_optimizer_state_before_the_first_step():
    """Built outside the traced step (else TensorFlow traces the first step twice): Adam's two moments per weight."""
    from utils.model import build_unet
    from utils.train import compile_model

    model = compile_model(build_unet("compact", 32))
    assert model.optimizer.built
    assert len(model.optimizer.variables) >= 2 * len(model.trainable_variables)


@pytest.mark.filterwarnings("ignore:The least populated class in y:UserWarning")  # 24 images, as above
def test_the_xla_choice_reaches_compile(small_sample, tmp_path, monkeypatch):
    """configure_device only decides on XLA; compile_model applies it, and train passes the decision on."""
    from utils import train
    from utils.config import get_config
    from utils.model import build_unet

    assert train.compile_model(build_unet("compact", 32), jit_compile=True).jit_compile is True
    assert train.compile_model(build_unet("compact", 32), jit_compile=False).jit_compile is False

    class Stop(Exception):
        pass

    seen = {}

    def record(model, loss, learning_rate, jit_compile=False):
        seen["jit_compile"] = jit_compile
        raise Stop  # the wiring is what is tested here, not the training

    monkeypatch.setattr(train, "configure_device", lambda: train.DeviceSetup("a GPU, pretended", True, True))
    monkeypatch.setattr(train, "compile_model", record)
    with pytest.raises(Stop):
        train.train(small_sample, tmp_path, get_config("quick"))
    assert seen == {"jit_compile": True}


@pytest.mark.filterwarnings("ignore:The least populated class in y:UserWarning")  # 24 images, as above
def test_the_gpu_path_mixed_precision_and_xla_trains_saves_and_predicts(small_sample, tmp_path, monkeypatch):
    """What every GPU reader runs in full mode: mixed_float16 with XLA, on a compiled step holding the loss and all
    the metrics (competition score, positive Dice, IoU), the checkpoint and the resume backup; then the saved model
    predicts. On a CPU both work, slowly, so CI runs it at full mode's code path with smaller sizes."""
    import dataclasses

    from utils import train
    from utils.config import get_config
    from utils.data import make_dataset

    def gpu_setup():  # configure_device on a GPU, pretended: the policy is really set
        keras.mixed_precision.set_global_policy("mixed_float16")
        return train.DeviceSetup("a GPU, pretended", True, True)

    monkeypatch.setattr(train, "configure_device", gpu_setup)
    config = dataclasses.replace(get_config("full"), image_size=64, num_epochs=1, batch_size=4)
    try:
        run = train.train(small_sample, tmp_path, config)
        assert run.model.jit_compile is True and run.model.dtype_policy.name == "mixed_float16"
        assert run.model.layers[-1].compute_dtype == "float32"  # the sigmoid output, for a stable loss
        log = pd.read_csv(tmp_path / "log.csv")
        assert list(log["epoch"]) == [0]
        logged = ["loss", "competition_score", "positive_dice", "iou", "val_loss", "val_competition_score"]
        assert np.isfinite(log[logged].to_numpy()).all(), log
        best = keras.models.load_model(tmp_path / "best.keras")
        validation = run.splits[run.splits["split"] == "validation"]
        probabilities, masks = evaluate.predict(best, make_dataset(validation, config.image_size, config.batch_size))
        assert probabilities.shape == masks.shape[:3] and probabilities.dtype == np.float32
        assert np.isfinite(probabilities).all() and 0 <= probabilities.min() <= probabilities.max() <= 1
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.filterwarnings("ignore:The least populated class in y:UserWarning")
def test_a_hyperparameter_file_drives_the_command_line_trainer(small_sample, tmp_path, capsys):
    """What a search writes, ``python -m utils.train --hyperparameters`` trains: the searched widths and depth."""
    from utils import train

    chosen = {"base_filters": 4, "depth": 2, "learning_rate": 0.003, "loss": "focal_dice", "score": 0.9}
    path = train.write_hyperparameters(chosen, tmp_path / "best.json")
    assert train.read_hyperparameters(path) == {k: v for k, v in chosen.items() if k != "score"}
    train.main(["--data", str(small_sample), "--epochs", "1", "--image-size", "32", "--batch-size", "4",
                "--run-dir", str(tmp_path / "run"), "--hyperparameters", str(path)])
    model = keras.models.load_model(tmp_path / "run" / "best.keras")
    widths = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert widths[:4] == [4, 4, 8, 8] and max(widths) == 16  # 4 doubling over 2 levels, bottleneck 16
    assert model.loss.__name__ == "focal_dice_loss"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.003)


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read hyperparameters"),
    ('{"base_filters": 16, "depth": 4, "learning_rate": 0.001}', "missing \\['loss'\\]"),
    ('{"base_filters": 16, "depth": 4, "learning_rate": 5, "loss": "bce_dice"}', "learning_rate=5"),
    ('{"base_filters": 0, "depth": 4, "learning_rate": 0.001, "loss": "bce_dice"}', "base_filters=0"),
    ('{"base_filters": 16, "depth": 4, "learning_rate": 0.001, "loss": "l2"}', "loss='l2' is not known"),
])
def test_a_bad_hyperparameter_file_names_the_file_and_the_value(tmp_path, content, message):
    from utils import train

    path = tmp_path / "hyperparameters.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        train.read_hyperparameters(path)
    assert str(path) in str(error.value)


def test_checkpoint_early_stopping_and_schedule_follow_the_validation_loss(tmp_path):
    # The score at threshold 0.5 rewards a model that predicts nothing on a mostly empty validation split; the
    # checkpoint must not be chosen by it (chapter 7).
    from utils.train import make_callbacks

    callbacks = {type(c).__name__: c for c in make_callbacks(tmp_path, summary=False)}
    for name in ("ModelCheckpoint", "EarlyStopping", "ReduceLROnPlateau"):
        assert callbacks[name].monitor == "val_loss", name
    assert callbacks["ModelCheckpoint"].save_best_only and callbacks["ModelCheckpoint"].mode == "min"


def test_the_epoch_line_shows_the_rate_the_epoch_trained_with(capsys):
    # ReduceLROnPlateau lowers the optimizer's rate at the end of an epoch; log.csv keeps the rate the epoch used,
    # and so must the printed line, or the two disagree (chapter 7's resume table).
    from utils.train import EpochSummary

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    summary = EpochSummary(keys=("loss",))
    summary.set_model(model)
    summary.set_params({"epochs": 4})
    summary.on_epoch_begin(3)
    model.optimizer.learning_rate.assign(5e-4)  # as ReduceLROnPlateau does before this callback runs
    summary.on_epoch_end(3, {"loss": 0.5, "learning_rate": 1e-3})
    assert "epoch   4/4  loss 0.500  lr 1.0e-03" in capsys.readouterr().out


def test_one_rule_chooses_the_epoch_best_keras_holds():
    """The epoch with the lowest val_loss, not the best score of any epoch (which an all-empty epoch can hold)."""
    from utils.train import chosen_epoch

    history = {"val_loss": [1.2, 0.8, 0.9], MONITOR: [0.80, 0.70, 0.75], "val_predicted_positive": [0.0, 0.3, 0.4]}
    chosen = chosen_epoch(history)
    assert chosen == {"epoch": 1, "val_loss": 0.8, "score": 0.70, "predicted_positive": 0.3, "failure": ""}
    assert chosen_epoch(pd.DataFrame(history)) == chosen
    history["val_predicted_positive"][1] = 0.0
    assert chosen_epoch(history)["failure"] == "predicts nothing"
    history["val_predicted_positive"][1] = 0.95
    assert chosen_epoch(history)["failure"] == "marks nearly every image"
    with pytest.raises(ValueError, match="no epoch has a val_loss"):
        chosen_epoch({"val_loss": [], MONITOR: []})


def test_predicted_positive_counts_the_images_called_positive():
    from utils.metrics import PredictedPositive

    true, pred = masks_and_predictions()
    share = PredictedPositive()
    share.update_state(true, pred)
    assert float(share.result()) == pytest.approx(0.5)  # the noisy empty image stays below 0.5
    small = PredictedPositive(min_predicted_area=200)  # the 144-pixel square counts as empty with this rule
    small.update_state(true, pred)
    assert float(small.result()) == 0.0


def test_flip_tta_averages_the_prediction_of_the_mirrored_image_mirrored_back():
    import tensorflow as tf

    ramp = np.linspace(0.1, 0.9, 8, dtype="float32")[None, None, :, None]  # brighter to the right: not symmetric
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * ramp)(inputs))
    images = np.random.default_rng(0).random((3, 8, 8, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros_like(images))).batch(2)
    plain, _ = evaluate.predict(model, dataset)
    flipped, masks = evaluate.predict(model, dataset, flip=True)
    assert np.allclose(plain, (images * ramp)[..., 0])
    assert np.allclose(flipped, (images * (ramp + ramp[:, :, ::-1]) / 2)[..., 0])  # the ramp made symmetric
    assert masks.shape == (3, 8, 8) and not np.allclose(plain, flipped)
    table = evaluate.tune_tta(model, dataset)
    assert list(table.columns) == ["flip", "score", "threshold", "min_component_area"]
    assert set(table["flip"]) == {False, True} and table["score"].is_monotonic_decreasing


def test_an_exported_model_reloaded_in_a_fresh_process_predicts_what_the_model_does(tmp_path):
    import subprocess
    import sys

    import tensorflow as tf

    from utils.model import build_unet

    keras.utils.set_random_seed(3)
    model = build_unet("compact", 32)
    pixels = np.random.default_rng(0).integers(0, 256, (100, 120)).astype("float32")  # any size, not square
    pixels[40:70, 30:60] = 255  # something bright
    # In this process: the model on the pipeline's preprocessing, resized back, then the triplet rule in numpy.
    probability = model.predict(evaluate.preprocess(pixels, 32), verbose=0)
    expected = tf.image.resize(probability, pixels.shape, "bilinear").numpy()[0, ..., 0]
    # Thresholds inside the untrained model's range, so that the mask holds some pixels and not all of them.
    triplet = (float(np.percentile(expected, 90)), 300.0, float(np.median(expected)))
    path = evaluate.export_for_inference(model, tmp_path / "exported", triplet)
    np.save(tmp_path / "pixels.npy", pixels)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "loaded = tf.saved_model.load(sys.argv[1])\n"
        "out = loaded.segment(tf.constant(np.load(sys.argv[2])))\n"
        "np.savez(sys.argv[3], mask=out['mask'].numpy(), probability=out['probability'].numpy())\n")
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "pixels.npy"), str(tmp_path / "out.npz")],
                   check=True, timeout=120, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    exported = np.load(tmp_path / "out.npz")
    assert exported["probability"].shape == pixels.shape and exported["mask"].dtype == np.uint8
    assert np.allclose(exported["probability"], expected, atol=1e-5)
    assert np.array_equal(exported["mask"], evaluate.triplet_postprocess(expected, *triplet))
    assert 0 < exported["mask"].sum() < pixels.size  # a mask with something in it: the comparison means something
    with pytest.raises(ValueError, match="triplet"):
        evaluate.export_for_inference(model, tmp_path / "bad", (0.3, 100, 0.5))
