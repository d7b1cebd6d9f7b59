"""A picture of the whole U, read from a model that ``utils.model.build_unet`` built.

Nothing here is typed in: the levels, feature-map sizes, widths, up-sampling mode and skip connections are read
from the model's layers and from its graph (which encoder tensor each decoder level concatenates), so the
picture changes when the code does. ``unet_layout`` returns that description; ``draw_unet`` draws it.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclasses.dataclass(frozen=True)
class Level:
    """One box of the U: a convolution block's output, ``size`` x ``size`` x ``width``."""

    name: str
    size: int
    width: int


@dataclasses.dataclass(frozen=True)
class UNetLayout:
    """What the diagram shows, read from a model built by ``build_unet``.

    ``skips[i]`` is the name of the encoder level whose output decoder level ``i + 1`` concatenates.
    """

    input_size: int
    input_channels: int
    stem: Level | None
    stem_kernel: int | None
    encoder: tuple[Level, ...]
    bottleneck: Level
    decoder: tuple[Level, ...]
    skips: tuple[str, ...]
    upsampling: str
    batch_norm: bool
    context: bool
    dropout: bool
    output_channels: int
    output_activation: str

    @property
    def depth(self) -> int:
        return len(self.encoder)


def _layer(model: keras.Model, name: str) -> keras.layers.Layer | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _producer(tensor: keras.KerasTensor) -> str:
    """The name of the layer that produced a symbolic tensor."""
    return tensor._keras_history.operation.name


def _level(model: keras.Model, name: str) -> Level:
    shape = model.get_layer(f"{name}_relu2").output.shape
    return Level(name, int(shape[1]), int(shape[-1]))


def unet_layout(model: keras.Model) -> UNetLayout:
    """Read levels, sizes, widths and skip connections from a model built by ``utils.model.build_unet``.

    Raises:
        ValueError: if ``model`` does not have the layer names that ``build_unet`` gives (for example a model
            built by hand); build it with ``utils.model.build_unet`` instead.
    """
    if _layer(model, "encoder1_relu2") is None or _layer(model, "bottleneck_relu2") is None:
        raise ValueError(
            f"model {model.name!r} has no layers named 'encoder1_relu2' and 'bottleneck_relu2': unet_layout reads "
            "models built by utils.model.build_unet"
        )
    depth = 0
    while _layer(model, f"encoder{depth + 1}_relu2") is not None:
        depth += 1
    encoder = tuple(_level(model, f"encoder{level}") for level in range(1, depth + 1))
    decoder = tuple(_level(model, f"decoder{level}") for level in range(1, depth + 1))
    skips = []
    for level in range(1, depth + 1):
        inputs = model.get_layer(f"decoder{level}_concat").input
        skips.append(next(_producer(t).removesuffix("_relu2") for t in inputs if _producer(t).startswith("encoder")))
    upsampling = "transpose" if _layer(model, "decoder1_up_transpose") is not None else "bilinear"
    stem_layer = _layer(model, "stem")
    stem = None
    if stem_layer is not None:
        shape = stem_layer.output.shape
        stem = Level("stem", int(shape[1]), int(shape[-1]))
    head = model.get_layer("head_conv")
    activations = [name for name in ("sigmoid", "softmax") if _layer(model, f"head_{name}") is not None]
    input_shape = model.input.shape
    return UNetLayout(
        input_size=int(input_shape[1]),
        input_channels=int(input_shape[-1]),
        stem=stem,
        stem_kernel=int(stem_layer.kernel_size[0]) if stem_layer is not None else None,
        encoder=encoder,
        bottleneck=_level(model, "bottleneck"),
        decoder=decoder,
        skips=tuple(skips),
        upsampling=upsampling,
        batch_norm=_layer(model, "encoder1_bn1") is not None,
        context=_layer(model, "context_scale") is not None,
        dropout=_layer(model, "bottleneck_dropout") is not None,
        output_channels=int(head.filters),
        output_activation=activations[0] if activations else "none (logits)",
    )


def draw_unet(model: keras.Model, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Draw the U of a model built by ``build_unet``: one box per level with its size and width, pooling,
    up-sampling and the skip connections. Returns the matplotlib Figure.

    The contracting path descends on the left, the expanding path climbs on the right, and each dashed arrow
    is a skip connection drawn from the encoder level that the decoder level really concatenates.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    layout = unet_layout(model)
    depth = layout.depth
    if ax is None:
        fig, ax = plt.subplots(figsize=(2.4 * depth + 3.5, 1.1 * depth + 2.4))
    else:
        fig = ax.figure
    box_w, box_h = 1.2, 0.62
    x_step = 1.45

    def box(x: float, y: float, level: Level, colour: str, note: str = "") -> None:
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.02",
                                    facecolor=colour, edgecolor="black", lw=0.8))
        text = f"{level.size}x{level.size}\n{level.width} ch" + (f"\n{note}" if note else "")
        ax.text(x, y, text, ha="center", va="center", fontsize=8)

    def arrow(start, end, colour="black", style="-|>", dashed=False, label="", offset=(0.0, 0.0)) -> None:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color=colour, lw=1.0,
                                     linestyle="--" if dashed else "-"))
        if label:
            ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], label, fontsize=7,
                    ha="center", va="center", color=colour)

    position = {}
    top = 0.0
    for index, level in enumerate(layout.encoder):
        position[level.name] = (index * x_step, top - index)
    position["bottleneck"] = (depth * x_step, top - depth)
    for index, level in enumerate(layout.decoder, start=1):
        position[level.name] = ((depth + index) * x_step, top - (depth - index))
    block = "2 x [3x3 conv" + (", BN" if layout.batch_norm else "") + ", ReLU]"

    # Input and (optional) stem above the first encoder level; output head above the last decoder level.
    x0, y0 = position["encoder1"]
    in_y = y0 + 1.05
    ax.text(x0, in_y, f"input\n{layout.input_size}x{layout.input_size}x{layout.input_channels}", ha="center",
            va="center", fontsize=8)
    stem_note = f"{layout.stem_kernel}x{layout.stem_kernel} conv stem\n-> {layout.stem.width} ch" if layout.stem else ""
    arrow((x0, in_y - 0.25), (x0, y0 + box_h / 2), label=stem_note, offset=(0.75, 0.0))
    xl, yl = position[f"decoder{depth}"]
    out_y = yl + 1.05
    ax.text(xl, out_y, f"output\n{layout.input_size}x{layout.input_size}x{layout.output_channels}", ha="center",
            va="center", fontsize=8)
    arrow((xl, yl + box_h / 2), (xl, out_y - 0.25), label=f"1x1 conv, {layout.output_activation}",
          offset=(0.95, 0.0))

    for level in layout.encoder:
        box(*position[level.name], level, "#cfe2f3")
    note = " + ".join(n for n, on in (("context", layout.context), ("dropout", layout.dropout)) if on)
    box(*position["bottleneck"], layout.bottleneck, "#f9cb9c", note)
    for level in layout.decoder:
        box(*position[level.name], level, "#d9ead3")

    down = [position[level.name] for level in layout.encoder] + [position["bottleneck"]]
    for (xa, ya), (xb, yb) in zip(down, down[1:]):
        arrow((xa + 0.1, ya - box_h / 2), (xb - 0.1, yb + box_h / 2), colour="#1155cc",
              label="max-pool 2x2", offset=(-0.45, -0.05))
    up_label = "up-conv 2x2\n(transposed)" if layout.upsampling == "transpose" else "bilinear x2\n+ 2x2 conv"
    up = [position["bottleneck"]] + [position[level.name] for level in layout.decoder]
    for (xa, ya), (xb, yb) in zip(up, up[1:]):
        arrow((xa + 0.1, ya + box_h / 2), (xb - 0.1, yb - box_h / 2), colour="#38761d", label=up_label,
              offset=(0.62, -0.14))
    for level, skip in zip(layout.decoder, layout.skips):
        (xa, ya), (xb, yb) = position[skip], position[level.name]
        label = "skip: copy and concatenate" if level.name == f"decoder{depth}" else "concatenate"
        arrow((xa + box_w / 2, ya), (xb - box_w / 2, yb), colour="grey", dashed=True, label=label,
              offset=(0.0, 0.12))

    ax.set_xlim(-1.0, 2 * depth * x_step + 1.0)
    ax.set_ylim(top - depth - 0.7, top + 1.5)
    ax.set_aspect("auto")
    ax.axis("off")
    ax.set_title(title or f"{model.name}: depth {depth}, {model.count_params():,} parameters, every conv block is "
                 f"{block}", fontsize=9)
    return fig
