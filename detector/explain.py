"""Grad-CAM heatmaps (Selvaraju et al. 2017), following keras-io's grad_cam example: the
gradient of P(fake) with respect to a conv layer's output weights that layer's channels.
Red means "this region pushed the score towards fake"."""
from __future__ import annotations

import functools
import threading

import numpy as np
from PIL import Image

from detector.store import MAX_LOADED as _MAX_LOADED


@functools.lru_cache(maxsize=_MAX_LOADED)  # holds its model: as many as store keeps loaded
def _gradcam_fn(model, layer_name: str):
    """One compiled Grad-CAM per (model, layer): graph mode makes the forward + backward pass
    several times faster than an eager GradientTape, and the fixed signature (any batch, the
    model's own size) never retraces. No AutoGraph: tracing writes no file to the temp folder."""
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])
    size = tuple(model.inputs[0].shape[1:])

    def cam(x):
        with tf.GradientTape() as tape:
            conv, pred = grad_model(x, training=False)
            score = pred[:, 0]
        grads = tape.gradient(score, conv)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1))

    return tf.function(cam, input_signature=[tf.TensorSpec((None, *size), tf.float32)], autograph=False)


_traced: set[tuple[int, str]] = set()  # (id(model), layer) whose compiled Grad-CAM has run once
_tracing: dict[tuple[int, str], threading.Lock] = {}
_tracing_guard = threading.Lock()


def gradcam(model, batch: np.ndarray, layer_name: str) -> np.ndarray:
    """(N, S, S, 3) float pixels 0..255 -> (N, h, w) heatmaps in [0, 1].

    The compiled function is built and traced by its first caller (seconds for a large model);
    a second thread asking meanwhile (a page while the start-up warm-up, `detector.warmup`,
    traces it) waits for that trace rather than building and tracing a second copy: a second
    trace, or an eager pass beside it, leaves the server larger for good (docs/performance.md)."""
    x = np.asarray(batch, np.float32)
    key = (id(model), layer_name)
    if key not in _traced:
        with _tracing_guard:
            lock = _tracing.setdefault(key, threading.Lock())
        with lock:
            cam = _gradcam_fn(model, layer_name)(x).numpy()
            _traced.add(key)
    else:
        cam = _gradcam_fn(model, layer_name)(x).numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0).astype("float32")


# matplotlib's 'jet' segment data: (position, value) per channel
_JET = (((0.0, 0.35, 0.66, 0.89, 1.0), (0.0, 0.0, 1.0, 1.0, 0.5)),
        ((0.0, 0.125, 0.375, 0.64, 0.91, 1.0), (0.0, 0.0, 1.0, 1.0, 0.0, 0.0)),
        ((0.0, 0.11, 0.34, 0.65, 1.0), (0.5, 1.0, 1.0, 0.0, 0.0)))


def jet(v: np.ndarray) -> np.ndarray:
    """The 'jet' colour map on [0, 1] values -> RGB floats in [0, 1]. Written out here so that
    drawing a heatmap never imports matplotlib (which writes its caches on first import)."""
    v = np.clip(np.asarray(v, dtype=np.float64), 0.0, 1.0)
    return np.stack([np.interp(v, xs, ys) for xs, ys in _JET], axis=-1)


def colorize(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [0,1] heatmap -> RGB uint8 of `size` (width, height) in the 'jet' colour map."""
    up = Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return (jet(np.asarray(up) / 255.0) * 255).astype(np.uint8)


def overlay(rgb: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap blended over the image it explains (alpha = heatmap opacity)."""
    colour = colorize(heatmap, (rgb.shape[1], rgb.shape[0]))
    return (rgb.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).astype(np.uint8)
