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
