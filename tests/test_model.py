import keras
import numpy as np
import pytest

from utils.model import (
    PRESETS,
    UNetConfig,
    build_unet,
    context_block,
    conv_block,
    conv_flops,
    get_unet_config,
    output_head,
    upsample,
)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("image_size", [32, 64, 96])
def test_every_preset_keeps_the_image_size(preset, image_size):
    model = build_unet(preset, image_size)
    assert model.output.shape == (None, image_size, image_size, 1)
    assert model.input.shape == (None, image_size, image_size, 1)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_depths_and_upsampling_modes(depth, upsampling):
    encoder = tuple(8 * 2**i for i in range(depth))
    model = build_unet("compact", 64, encoder_filters=encoder, bottleneck_filters=8 * 2**depth,
                       decoder_filters=encoder[::-1], upsampling=upsampling)
    assert model.output.shape == (None, 64, 64, 1)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == depth


def test_several_classes_softmax_and_logits():
    probabilities = build_unet("compact", 32, num_classes=3)(np.random.rand(2, 32, 32, 1))
    assert probabilities.shape == (2, 32, 32, 3)
    assert np.allclose(np.sum(probabilities, axis=-1), 1, atol=1e-5)
    logits = build_unet("compact", 32, logits=True)
    assert logits.layers[-1].activation.__name__ == "linear"


def test_the_compact_head_starts_at_its_prior_and_the_paper_head_at_one_half():
    empty = np.zeros((1, 32, 32, 1), "float32")
    compact = build_unet("compact", 32)(empty, training=False).numpy()
    paper = build_unet("paper", 32)(empty, training=False).numpy()
    assert np.allclose(compact, PRESETS["compact"].output_prior, atol=1e-6) and PRESETS["compact"].output_prior == 0.01
    assert np.allclose(paper, 0.5, atol=1e-6)
    several = build_unet("compact", 32, num_classes=3)  # a prior is for one sigmoid channel: zero bias here
    assert np.allclose(several.get_layer("head_conv").bias.numpy(), 0.0)
    with pytest.raises(ValueError, match="prior=0.01 needs one output class"):
        output_head(keras.Input((8, 8, 4)), num_classes=3, prior=0.01)
    with pytest.raises(ValueError, match="prior=1.5"):
        output_head(keras.Input((8, 8, 4)), prior=1.5)


@pytest.mark.parametrize("size, message", [(100, "divisible by 2\\*\\*depth = 16.*96"), (8, "divisible")])
def test_bad_size_raises(size, message):
    with pytest.raises(ValueError, match=message):
        build_unet("compact", size)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="preset='huge'"):
        build_unet("huge", 64)
    with pytest.raises(ValueError, match="upsampling='cubic'"):
        build_unet("compact", 64, upsampling="cubic")
    with pytest.raises(ValueError, match="mode='cubic'"):
        upsample(keras.Input((8, 8, 4)), 4, mode="cubic")
    with pytest.raises(ValueError, match="one width per encoder level"):
        build_unet("compact", 64, decoder_filters=(8, 8))


def test_paper_preset_has_the_known_parameter_count():
    # 31,030,593 = the widely reported ~31.0 M of a "same"-padded U-Net with one output channel
    assert build_unet("paper", 64).count_params() == 31_030_593


def test_conv_block_parameters_match_the_formula():
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, conv_block(inputs, 8))
    assert model.count_params() == (3 * 3 * 3 * 8 + 8) + (3 * 3 * 8 * 8 + 8)


def test_flops_of_a_single_convolution():
    inputs = keras.Input((10, 12, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(5, 3, padding="same")(inputs))
    assert conv_flops(model) == 2 * 3 * 3 * 3 * 5 * 10 * 12
    up = keras.Model(inputs, keras.layers.Conv2DTranspose(4, 2, strides=2)(inputs))
    assert conv_flops(up) == 2 * 2 * 2 * 3 * 4 * 10 * 12


def test_context_block_gates_channels_with_global_information():
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, context_block(inputs))
    x = np.random.default_rng(0).random((1, 8, 8, 4)).astype("float32")
    y = model(x).numpy()
    ratio = y / x  # one factor per channel, the same at every pixel, between 0 and 1
    assert np.allclose(ratio, ratio[:, :1, :1, :], atol=1e-5) and np.all((ratio > 0) & (ratio < 1))
    assert model.count_params() == 4 * 4 + 4


def test_save_and_load_round_trip(tmp_path):
    model = build_unet("stem7_context", 32)
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    model.save(tmp_path / "unet.keras")
    loaded = keras.models.load_model(tmp_path / "unet.keras")
    assert np.array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_same_seed_same_initial_weights():
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        weights.append(build_unet("compact", 32).get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    keras.utils.set_random_seed(8)
    assert not all(np.array_equal(a, b) for a, b in zip(weights[0], build_unet("compact", 32).get_weights()))


def test_overrides_replace_fields():
    config = get_unet_config("paper", dropout=0.0)
    assert config.dropout == 0.0 and config.encoder_filters == PRESETS["paper"].encoder_filters


def test_model_names_say_what_was_built():
    assert build_unet("compact", 32).name == "unet_compact"
    assert build_unet(UNetConfig((8, 16), 32, (16, 8)), 32).name == "unet"


def test_the_paper_preset_is_the_paper_and_the_variant_says_what_it_adds():
    model = build_unet("paper", 64)
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert first.kernel_size == (3, 3)  # the paper's first layer: a 3x3 convolution, no 7x7 stem
    ups = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert len(ups) == 4 and all(u.kernel_size == (2, 2) and u.strides == (2, 2) for u in ups)  # "up-conv 2x2"
    assert "design_notes" not in PRESETS
    variant = PRESETS["stem7_context"]
    assert variant.stem_kernel == 7 and variant.context
    assert build_unet("stem7_context", 32).get_layer("stem").kernel_size == (7, 7)


@pytest.mark.main_stack_only  # on the oldest stack chapter 5 builds, freezes and fine-tunes a backbone U-Net
def test_a_backbone_unet_taps_its_skips_from_the_backbones_layers_and_freezes_then_fine_tunes(tmp_path):
    from utils.model import backbone_skips, build_backbone_unet, unfreeze

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    skips = backbone_skips(base, 32)
    assert [tuple(t.shape[1:3]) for t in skips] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    for tensor in skips[:-1]:  # each is the last layer's output at its resolution, found from the layers
        size = tensor.shape[1]
        last = [layer for layer in base.layers if len(layer.output.shape) == 4 and layer.output.shape[1] == size][-1]
        assert tensor is last.output
    # The loading path of pretrained weights, offline: a weights file written here stands in for ImageNet's.
    base.save_weights(tmp_path / "backbone.weights.h5")
    model = build_backbone_unet("MobileNetV2", 32, weights=str(tmp_path / "backbone.weights.h5"))
    encoder = model.get_layer("encoder")
    assert all(np.array_equal(a, b) for a, b in zip(encoder.get_weights(), base.get_weights(), strict=True))
    assert model.input.shape == (None, 32, 32, 1) and model.output.shape == (None, 32, 32, 1)
    assert not encoder.trainable and not any(w is v for w in model.trainable_weights for v in encoder.weights)

    images = np.random.default_rng(0).random((4, 32, 32, 1)).astype("float32")
    masks = (images > 0.9).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    before = [w.copy() for w in encoder.get_weights()]
    model.fit(images, masks, epochs=1, batch_size=2, verbose=0)  # frozen: only the decoder learns
    assert all(np.array_equal(a, b) for a, b in zip(before, encoder.get_weights()))
    unfreeze(model).compile(optimizer=keras.optimizers.Adam(1e-5), loss="binary_crossentropy")
    model.fit(images, masks, epochs=1, batch_size=2, verbose=0)  # fine-tuning: the encoder moves too
    assert any(not np.array_equal(a, b) for a, b in zip(before, encoder.get_weights()))

    model.save(tmp_path / "backbone_unet.keras")  # standard layers only: it saves and loads like any model
    reloaded = keras.models.load_model(tmp_path / "backbone_unet.keras")
    assert np.allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)


def test_backbone_unet_refuses_an_unknown_backbone_or_size():
    from utils.model import build_backbone_unet

    with pytest.raises(ValueError, match="is not one of"):
        build_backbone_unet("ResNet34", 64, weights=None)  # not in keras.applications
    with pytest.raises(ValueError, match="divisible by 32"):
        build_backbone_unet("MobileNetV2", 48, weights=None)
