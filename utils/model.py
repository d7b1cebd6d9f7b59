"""U-Net building blocks (Ronneberger, Fischer & Brox, 2015) as small Keras functions, and their assembly.

Every block takes a tensor and returns a tensor (the encoder block returns two), so the chapters can build a
model from them one step at a time with the Keras functional API. ``build_unet`` assembles a whole U-Net from a
``UNetConfig``; ``PRESETS`` holds the configurations the book compares.
"""
from __future__ import annotations

import dataclasses
import math

import keras
from keras import layers


def conv_block(x: keras.KerasTensor, filters: int, kernel_size: int = 3, batch_norm: bool = False,
               name: str = "block") -> keras.KerasTensor:
    """[Conv2D -> (BatchNorm) -> ReLU] twice, "same" padding: the U-Net's basic unit.

    With batch normalisation the convolutions have no bias (the normalisation's offset replaces it).
    """
    for i in (1, 2):
        x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def encoder_block(x: keras.KerasTensor, filters: int, batch_norm: bool = False,
                  name: str = "encoder") -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """A contracting step: conv_block, then 2x2 max-pooling with stride 2. Returns (skip, pooled)."""
    skip = conv_block(x, filters, batch_norm=batch_norm, name=name)
    pooled = layers.MaxPooling2D(pool_size=2, strides=2, name=f"{name}_pool")(skip)
    return skip, pooled


UPSAMPLING_MODES = ("transpose", "bilinear")


def upsample(x: keras.KerasTensor, filters: int, mode: str = "transpose", name: str = "up") -> keras.KerasTensor:
    """Double the resolution and set the channels to ``filters``: two implementations of an up-convolution.

    The paper's Figure 1 calls this step "up-conv 2x2": a *learned* 2x2 up-convolution that halves the channels.
    Its released Caffe model implements it as a deconvolution layer, i.e. a transposed convolution with a 2x2
    kernel and stride 2, followed by a ReLU; the paper's text mentions no ReLU there and says nothing about
    bilinear interpolation.

    - "transpose" (default, the released model's layer, without its ReLU): a 2x2 transposed convolution with
      stride 2. Each input pixel scatters its own learned 2x2 patch, so no output pixel mixes two input pixels.
    - "bilinear": fixed bilinear up-sampling, then a learned 2x2 convolution. Resize-then-convolve discourages the
      checkerboard artefacts a transposed convolution easily makes (Odena et al., 2016, who had their best results
      with nearest-neighbour resizing, not bilinear). With "same" padding an even-sized kernel cannot be centred:
      Keras pads one extra row and column at the bottom and right, so each output samples the point half a pixel
      below and to the right of its own position, and the map's content moves half a pixel up and to the left.

    Raises:
        ValueError: if ``mode`` is not one of ``UPSAMPLING_MODES``.
    """
    if mode == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_transpose")(x)
    if mode == "bilinear":
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_bilinear")(x)
        return layers.Conv2D(filters, 2, padding="same", name=f"{name}_conv")(x)
    raise ValueError(f"mode={mode!r} is not known; use one of {UPSAMPLING_MODES}")


def decoder_block(x: keras.KerasTensor, skip: keras.KerasTensor, filters: int, upsampling: str = "transpose",
                  batch_norm: bool = False, name: str = "decoder") -> keras.KerasTensor:
    """An expanding step: up-sample, *concatenate* the encoder's skip tensor, conv_block."""
    x = upsample(x, filters, upsampling, name=f"{name}_up")
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return conv_block(x, filters, batch_norm=batch_norm, name=name)


def context_block(x: keras.KerasTensor, name: str = "context") -> keras.KerasTensor:
    """Global context as channel gating: global average pooling -> 1x1 convolution -> sigmoid -> scale.

    Each channel of ``x`` is multiplied by a weight in (0, 1) computed from the whole image, so a pixel's value
    depends on everything in the image, not only on its receptive field. A squeeze-and-excitation-style gate
    (Hu et al., 2018). EncNet's context encoding (Zhang et al., 2018) also ends in a channel gate, but it encodes
    the image with a learned codebook and trains with an extra loss; ParseNet (Liu et al., 2015) instead
    concatenates the pooled features back onto every pixel.
    """
    channels = x.shape[-1]
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    gate = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_gate")(pooled)
    return layers.Multiply(name=f"{name}_scale")([x, gate])


def output_head(x: keras.KerasTensor, num_classes: int = 1, logits: bool = False, prior: float | None = None,
                name: str = "head") -> keras.KerasTensor:
    """1x1 convolution to ``num_classes`` maps; sigmoid for one class, softmax over classes for several.

    The book trains the sigmoid head with the probability-based losses of ``utils.losses``: the Dice loss, the
    metrics and the evaluation all need probabilities, and with the TensorFlow backend Keras' cross-entropy
    recovers the logits of a tensor that comes straight from its sigmoid (chapter 5 checks both). The head
    computes in float32 even under mixed precision, so the sigmoid saturates only beyond |logit| ~ 17, not ~ 8.
    ``logits=True`` returns the raw scores instead (no activation), for losses built with ``from_logits=True``:
    the safer choice when something sits between the sigmoid and the loss. The ``utils`` losses do not accept them.

    ``prior`` (one class only): start the bias at ``log(prior / (1 - prior))``, so that the untrained network
    predicts ``prior`` for every pixel instead of 0.5 -- the initialisation of Lin et al. (2017, section 4.1)
    for a rare foreground. Without it, the first epochs go to unlearning "every pixel is half lesion".
    """
    bias = "zeros"
    if prior is not None:
        if num_classes != 1 or not 0 < prior < 1:
            raise ValueError(f"prior={prior!r} needs one output class and a value between 0 and 1")
        bias = keras.initializers.Constant(math.log(prior / (1 - prior)))
    x = layers.Conv2D(num_classes, 1, dtype="float32", bias_initializer=bias, name=f"{name}_conv")(x)
    if logits:
        return x
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name=f"{name}_{activation}")(x)


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Everything that shapes a U-Net; ``depth`` is the number of pooling steps, len(encoder_filters)."""

    encoder_filters: tuple[int, ...] = (64, 128, 256, 512)
    bottleneck_filters: int = 1024
    decoder_filters: tuple[int, ...] = (512, 256, 128, 64)
    stem_kernel: int | None = None  # a single k x k convolution before the first block (e.g. 7); not in the paper
    upsampling: str = "transpose"
    batch_norm: bool = False
    # One dropout layer on the bottleneck's output. The paper has "drop-out layers at the end of the contracting
    # path" without a rate; its released model has two, rate 0.5, after the last encoder block and the bottleneck.
    dropout: float = 0.0
    context: bool = False  # a context block (chapter 4) on the bottleneck; not in the paper
    num_classes: int = 1
    logits: bool = False
    # The untrained head's prediction for every pixel (see output_head); None starts at 0.5, as the paper does.
    # Used with one output class only (a sigmoid); several classes start at zero bias.
    output_prior: float | None = None

    @property
    def depth(self) -> int:
        return len(self.encoder_filters)


PRESETS: dict[str, UNetConfig] = {
    # The paper's widths and depth, with "same" padding (so output size = input size) and one output channel.
    "paper": UNetConfig(dropout=0.5),
    # Small enough to train on a CPU in minutes: a quarter of the paper's widths, with batch normalisation.
    # Its head starts at the prior 0.01 (Lin et al., 2017): lesions are rare pixels.
    "compact": UNetConfig((16, 32, 64, 128), 256, (128, 64, 32, 16), batch_norm=True, output_prior=0.01),
    # A variant found in some descriptions of "U-Net" that departs from the paper (whose first layer is a 3x3
    # convolution and which has no context block): a 7x7 stem, encoder 32/64/128, decoder 64/32/16, a context block
    # on the bottleneck.
    "stem7_context": UNetConfig((32, 64, 128), 256, (64, 32, 16), stem_kernel=7, batch_norm=True, context=True,
                                output_prior=0.01),
}


def get_unet_config(preset: str | UNetConfig = "compact", **overrides) -> UNetConfig:
    """A preset by name (or a config), with fields replaced by ``overrides``."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is not known; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    return dataclasses.replace(preset, **overrides)


def build_unet(preset: str | UNetConfig = "compact", image_size: int = 256, channels: int = 1,
               **overrides) -> keras.Model:
    """Assemble a U-Net from a preset name or UNetConfig, for square ``image_size`` x ``image_size`` inputs."""
    config = get_unet_config(preset, **overrides)
    if config.upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"upsampling={config.upsampling!r} is not known; use one of {UPSAMPLING_MODES}")
    if len(config.decoder_filters) != config.depth:
        raise ValueError(
            f"decoder_filters {config.decoder_filters} must have one width per encoder level ({config.depth})"
        )
    if image_size % 2**config.depth:
        raise ValueError(
            f"image_size={image_size} is not divisible by 2**depth = {2**config.depth}: each of the {config.depth} "
            f"poolings halves it; use e.g. {max(1, round(image_size / 2**config.depth)) * 2**config.depth}"
        )
    inputs = keras.Input(shape=(image_size, image_size, channels), name="image")
    x = inputs
    if config.stem_kernel:
        x = layers.Conv2D(config.encoder_filters[0], config.stem_kernel, padding="same", activation="relu",
                          kernel_initializer="he_normal", name="stem")(x)
    skips = []
    for level, filters in enumerate(config.encoder_filters, start=1):
        skip, x = encoder_block(x, filters, config.batch_norm, name=f"encoder{level}")
        skips.append(skip)
    x = conv_block(x, config.bottleneck_filters, batch_norm=config.batch_norm, name="bottleneck")
    if config.context:
        x = context_block(x, name="context")
    if config.dropout:
        x = layers.Dropout(config.dropout, name="bottleneck_dropout")(x)
    for level, (filters, skip) in enumerate(zip(config.decoder_filters, reversed(skips)), start=1):
        x = decoder_block(x, skip, filters, config.upsampling, config.batch_norm, name=f"decoder{level}")
    prior = config.output_prior if config.num_classes == 1 else None  # a prior for one sigmoid channel only
    outputs = output_head(x, config.num_classes, config.logits, prior)
    return keras.Model(inputs, outputs, name=f"unet_{preset}" if isinstance(preset, str) else "unet")


def conv_flops(model: keras.Model) -> int:
    """Floating-point operations of one forward pass for one image, counting a multiply-add as 2.

    Counts the convolutions (Conv2D, Conv2DTranspose), which hold nearly all of a U-Net's arithmetic;
    pooling, normalisation, activations and concatenation are left out.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            kernel_h, kernel_w, *_ = layer.kernel.shape
            c_in = layer.input.shape[-1]
            c_out = layer.filters
            if isinstance(layer, layers.Conv2DTranspose):  # each input pixel scatters a k x k patch
                positions = layer.input.shape[1] * layer.input.shape[2]
            else:
                positions = layer.output.shape[1] * layer.output.shape[2]
            total += 2 * kernel_h * kernel_w * c_in * c_out * positions
    return int(total)


# keras.applications backbones, and the input scaling each was trained with (its module's preprocess_input):
# "caffe" subtracts ImageNet's channel means from 0..255 values (and swaps RGB to BGR, which a grey image repeated
# to three channels does not notice), "tf" scales to -1..1, "torch" standardises 0..1 values with ImageNet's means
# and deviations, "raw" passes 0..255 (EfficientNet rescales inside the model).
BACKBONES = {"ResNet50": "caffe", "ResNet50V2": "tf", "MobileNetV2": "tf", "EfficientNetB0": "raw",
             "DenseNet121": "torch"}


def backbone_scaling(mode: str, name: str = "backbone_preprocess") -> layers.Layer:
    """A Keras layer that maps the book's 0..1 images to a backbone's expected input (``BACKBONES``): standard,
    serialisable layers, so a model with it saves to ``.keras`` and loads back like any other."""
    if mode == "caffe":
        means = [103.939 / 255, 116.779 / 255, 123.68 / 255]
        return layers.Normalization(mean=means, variance=[(1 / 255) ** 2] * 3, name=name)
    if mode == "tf":
        return layers.Rescaling(2.0, offset=-1.0, name=name)
    if mode == "torch":
        return layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.229**2, 0.224**2, 0.225**2], name=name)
    return layers.Rescaling(255.0, name=name)


def backbone_skips(backbone: keras.Model, image_size: int, levels: int = 4) -> list[keras.KerasTensor]:
    """The skip tensors of a U-Net built on ``backbone``, found from its layers rather than hard-coded: for each of
    the resolutions image_size / 2, / 4, ... / 2**levels, the output of the *last* layer at that resolution (the
    most processed features before the next down-sampling), then the deepest output (the bottleneck)."""
    last_at: dict[int, keras.KerasTensor] = {}
    for layer in backbone.layers:
        output = layer.output
        if isinstance(output, (list, tuple)) or len(output.shape) != 4 or output.shape[1] is None:
            continue
        last_at[int(output.shape[1])] = output
    wanted = [image_size // 2**level for level in range(1, levels + 1)]
    missing = [size for size in wanted if size not in last_at]
    if missing:
        raise ValueError(f"{backbone.name} has no layer output at {missing} pixels for a {image_size}-pixel input; "
                         f"its resolutions are {sorted(last_at, reverse=True)}")
    return [last_at[size] for size in wanted] + [backbone.output]


def build_backbone_unet(backbone: str = "ResNet50", image_size: int = 256, weights: str | None = "imagenet",
                        decoder_filters: tuple[int, ...] = (256, 128, 64, 32, 16), freeze: bool = True
                        ) -> keras.Model:
    """A U-Net whose encoder is a pretrained ``keras.applications`` backbone (the top SIIM-ACR solutions used
    ImageNet encoders: ResNet, SE-ResNeXt, EfficientNet).

    The grey image (1 channel, 0..1, as the book's pipeline gives it) is repeated to 3 channels and scaled to
    what the backbone was trained on (``backbone_scaling``: its module's ``preprocess_input``). The skip
    connections are tapped at 1/2, 1/4, 1/8 and 1/16 of the input size (``backbone_skips``), the bottleneck is
    the backbone's last output (1/32), and the decoder up-samples five times with ``decoder_block`` (the last
    step has no skip) to the book's one-channel sigmoid head. ``weights``: "imagenet" (downloaded once, needs the
    network), None (random, as the offline build uses), or the path of a weights file. With ``freeze`` the
    backbone does not train: train the decoder first, then ``unfreeze`` and fine-tune with a lower learning rate.

    Raises:
        ValueError: for an unknown backbone, or an image size not divisible by 32.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone={backbone!r} is not one of {sorted(BACKBONES)}")
    if image_size % 32 or len(decoder_filters) != 5:
        raise ValueError(f"image_size={image_size} must be divisible by 32 (five down-samplings), and "
                         f"decoder_filters={decoder_filters} must have five widths")
    base = getattr(keras.applications, backbone)(include_top=False, weights=weights,
                                                 input_shape=(image_size, image_size, 3))
    encoder = keras.Model(base.input, backbone_skips(base, image_size), name="encoder")
    encoder.trainable = not freeze
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    rgb = layers.Concatenate(name="grey_to_rgb")([inputs, inputs, inputs])
    rgb = backbone_scaling(BACKBONES[backbone])(rgb)
    *skips, x = encoder(rgb, training=False)  # batch normalisation in inference mode, also when fine-tuned
    for level, (filters, skip) in enumerate(zip(decoder_filters, [*reversed(skips), None]), start=1):
        if skip is None:  # the last step, to full resolution: nothing to concatenate
            x = conv_block(upsample(x, filters, name=f"decoder{level}_up"), filters, name=f"decoder{level}")
        else:
            x = decoder_block(x, skip, filters, name=f"decoder{level}")
    return keras.Model(inputs, output_head(x, prior=0.01), name=f"unet_{backbone.lower()}")


def unfreeze(model: keras.Model) -> keras.Model:
    """Make a ``build_backbone_unet`` model's encoder trainable, for fine-tuning; compile it again afterwards."""
    model.get_layer("encoder").trainable = True
    return model
