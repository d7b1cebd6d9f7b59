"""utils.diagram reads the U from the model itself, so the picture follows the code."""
import keras
import matplotlib
import pytest

matplotlib.use("Agg")

from utils.diagram import draw_unet, unet_layout  # noqa: E402
from utils.model import build_unet, get_unet_config  # noqa: E402


def test_layout_of_the_compact_preset_matches_its_config():
    config = get_unet_config("compact")
    layout = unet_layout(build_unet("compact", 64))
    assert layout.depth == config.depth == 4
    assert [level.width for level in layout.encoder] == list(config.encoder_filters)
    assert [level.width for level in layout.decoder] == list(config.decoder_filters)
    assert [level.size for level in layout.encoder] == [64, 32, 16, 8]
    assert layout.bottleneck.size == 4 and layout.bottleneck.width == config.bottleneck_filters
    assert [level.size for level in layout.decoder] == [8, 16, 32, 64]
    # Each decoder level concatenates the encoder level of its own resolution, deepest first.
    assert layout.skips == ("encoder4", "encoder3", "encoder2", "encoder1")
    sizes = {level.name: level.size for level in layout.encoder}
    assert all(sizes[skip] == level.size for skip, level in zip(layout.skips, layout.decoder))
    assert (layout.upsampling, layout.batch_norm, layout.context, layout.stem) == ("transpose", True, False, None)
    assert (layout.output_channels, layout.output_activation) == (1, "sigmoid")


def test_layout_sees_stem_context_bilinear_dropout_and_logits():
    model = build_unet("compact", 64, encoder_filters=(8, 16, 32), bottleneck_filters=64, decoder_filters=(32, 16, 8),
                       stem_kernel=7, context=True, upsampling="bilinear", dropout=0.5, batch_norm=False,
                       logits=True)
    layout = unet_layout(model)
    assert layout.depth == 3 and layout.stem_kernel == 7 and layout.stem.width == 8
    assert layout.context and layout.dropout and not layout.batch_norm
    assert layout.upsampling == "bilinear" and layout.output_activation == "none (logits)"
    assert layout.skips == ("encoder3", "encoder2", "encoder1")


def test_drawing_labels_every_level():
    model = build_unet("compact", 64)
    figure = draw_unet(model)
    texts = " ".join(text.get_text() for text in figure.axes[0].texts)
    layout = unet_layout(model)
    for level in (*layout.encoder, layout.bottleneck, *layout.decoder):
        assert f"{level.size}x{level.size}\n{level.width} ch" in texts
    assert texts.count("concatenate") == layout.depth and texts.count("max-pool") == layout.depth
    matplotlib.pyplot.close(figure)


def test_a_model_not_built_by_build_unet_is_refused():
    inputs = keras.Input((8,))
    with pytest.raises(ValueError, match="build_unet"):
        unet_layout(keras.Model(inputs, keras.layers.Dense(1)(inputs)))
