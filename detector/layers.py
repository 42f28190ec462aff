"""Custom Keras layers, registered so `model.keras` files reload with `safe_mode=True`.

Only layers that Keras does not ship live here; everything else in the zoo is built from
stock layers so saved models stay portable across Keras versions.
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "deepfake_lab"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialAttention(keras.layers.Layer):
    """CBAM-style spatial attention: a 7x7 conv over channel-wise mean and max gives a
    per-pixel weight in (0, 1) that rescales the feature map. It lets a head focus on the
    blending boundary of a face swap instead of averaging over the whole crop."""

    def __init__(self, kernel_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.conv = keras.layers.Conv2D(
            1, kernel_size, padding="same", activation="sigmoid", name="attention_conv"
        )

    def build(self, input_shape):
        self.conv.build((*input_shape[:-1], 2))
        super().build(input_shape)

    def attention_map(self, x):
        """The (N, H, W, 1) weights; exposed for visualisation."""
        avg = ops.mean(x, axis=-1, keepdims=True)
        mx = ops.max(x, axis=-1, keepdims=True)
        return self.conv(ops.concatenate([avg, mx], axis=-1))

    def call(self, x):
        return x * self.attention_map(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffePreprocess(keras.layers.Layer):
    """RGB 0..255 -> BGR minus the ImageNet channel means: what ResNet50's ImageNet weights
    expect. Inside the model, so no caller can forget it."""

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, x):
        bgr = ops.flip(ops.cast(x, "float32"), axis=-1)
        return bgr - ops.convert_to_tensor(self.MEAN_BGR, dtype="float32")

    def compute_output_shape(self, input_shape):
        return input_shape


def _logit(p):
    """log(P / (1 - P)) of float32 probabilities clipped to [1e-7, 1 - 1e-7]."""
    p = ops.clip(p, 1e-7, 1 - 1e-7)
    return ops.log(p) - ops.log1p(-p)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SourceMixture(keras.layers.Layer):
    """Inputs [router (N, K) probabilities, K expert P(fake)s of shape (N, 1)] -> (N, 1):
    each expert's score calibrated by its own val fit, sigmoid(logit(p) / T + b), then
    averaged with the router's weights. Experts trained on different kinds of image are
    confident on different scales; calibrating each before mixing keeps one threshold
    meaningful for all."""

    def __init__(self, sources, temperatures, biases, **kwargs):
        super().__init__(**kwargs)
        if not len(sources) == len(temperatures) == len(biases):
            raise ValueError("one temperature and one bias per source")
        self.sources, self.temperatures, self.biases = list(sources), list(temperatures), list(biases)

    def call(self, inputs):
        router, *scores = inputs
        logits = _logit(ops.concatenate([ops.cast(s, "float32") for s in scores], axis=-1))
        t = ops.convert_to_tensor(self.temperatures, dtype="float32")
        b = ops.convert_to_tensor(self.biases, dtype="float32")
        calibrated = ops.sigmoid(logits / t + b)
        return ops.sum(router * calibrated, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "sources": self.sources,
                "temperatures": self.temperatures, "biases": self.biases}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Logit(keras.layers.Layer):
    """P -> log(P / (1 - P)), clipped away from 0 and 1: turns a sigmoid output back into the
    score it came from, so it can be blended with other logits (`detector.probes`)."""

    def call(self, p):
        return _logit(ops.cast(p, "float32"))

    def compute_output_shape(self, input_shape):
        return input_shape


def router_output(model):
    """(the router's softmax output, the sources in router order) of an assembled experts
    model (`detector.experts`: layers named "router" and "mixture"), None for any other:
    serving takes it from the same forward pass as P(fake), so showing which expert judged a
    face costs nothing. Here, beside `SourceMixture`, so serving need not import training."""
    names = {layer.name for layer in model.layers}
    if "router" not in names or "mixture" not in names:
        return None
    return model.get_layer("router").output, list(model.get_layer("mixture").sources)
