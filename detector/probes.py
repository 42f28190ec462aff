"""Position-aware linear probes: where in an aligned face a texture sits.

A branch expert's head averages its last feature map over the whole crop (global average
pooling), so it cannot tell where a texture is. GAN portraits and the photos they imitate
(StyleGAN and FFHQ) are aligned crops: eyes, mouth, hairline and background sit at the same
pixels in every image. A logistic regression on a frozen trunk map kept at full resolution
(one weight per position and channel) learns position-specific texture from few images: on
StyleGAN vs FFHQ (1,200 training images) a probe on one of Lite0's frozen ImageNet blocks
scores val AUC 0.92, as well as the fine-tuned branch (0.93), and differs from it; the same
maps globally pooled score 0.72-0.84. Two views of the face are probed: the whole input, and
a *mosaic* of the eyes, mouth and nose enlarged about twice (`MOSAIC_TILES`), run through the
same frozen trunk once more (5-fold on the training images: 0.921 for the whole input's
probes, 0.942 with the mosaic's). The expert's score becomes the mean of the branch's logit
and the probes' logits, each divided by its spread on val.

The whole view reads layers the trunk computes anyway; the mosaic costs one more pass of the
frozen blocks (shared weights: the file grows only by the probes' Dense units). They are
fitted on the plain training images of the source: augmented copies of them (mirrored,
shifted, rescaled, re-compressed) made the probes no more robust to degraded faces, only weaker.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

C = 0.1  # inverse L2 strength of every probe (standardised features; 5-fold AUC moves < 0.003 over 0.003-0.3)


def standardised_logistic(features: np.ndarray, labels: np.ndarray, c: float = C,
                          class_weight: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(coef K' x d, intercept K') of a logistic regression fitted on standardised
    `features` and folded back onto the raw ones, so a Dense layer on the raw features
    computes exactly its decision function (K' = 1 for two classes, as in scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(0), features.std(0) + 1e-6
    fitted = LogisticRegression(C=c, max_iter=3000, class_weight=class_weight).fit((features - mean) / scale, labels)
    coef = fitted.coef_ / scale
    return coef, fitted.intercept_ - (coef * mean).sum(1)


def fit_linear(maps: list[np.ndarray], labels: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """One `standardised_logistic` per flattened map: kernels ((d, 1) float32, a Dense layer's
    shape) and biases."""
    kernels, biases = [], []
    for flat in maps:
        coef, intercept = standardised_logistic(flat, np.asarray(labels))
        kernels.append(coef.T.astype("float32"))
        biases.append(float(intercept[0]))
    return kernels, biases


def linear_logits(maps: list[np.ndarray], kernels: list[np.ndarray], biases: list[float]) -> np.ndarray:
    """(N, probes) logits of flattened maps (one array per probe) under `fit_linear`'s units."""
    return np.stack([m.reshape(len(m), -1) @ k[:, 0] + b for m, k, b in zip(maps, kernels, biases)], 1)


def spread_weights(val_logits: np.ndarray) -> np.ndarray:
    """Blend weights of (N, K) logits: each divided by its spread on val, then averaged."""
    spread = val_logits.std(0) + 1e-6
    return 1.0 / (len(spread) * spread)


def logit(p) -> np.ndarray:
    """log(P / (1 - P)) clipped as `detector.layers.Logit` clips in float32, so a score
    computed here for fitting equals the one the model computes when serving."""
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, float(np.float32(1 - 1e-7)))
    return np.log(p / (1 - p))


#: The mosaic view: the parts of an FFHQ-aligned 256 px portrait where a GAN's small mistakes
#: show (eyes, mouth, nose; rows then columns, in pixels of a 256 px input, scaled to others),
#: each enlarged to a quarter of the input and tiled 2 x 2 into one image, so one more pass of
#: the frozen trunk sees them at about twice the detail.
MOSAIC_TILES = {"left_eye": (88, 152, 58, 122), "right_eye": (88, 152, 134, 198),
                "mouth": (150, 230, 88, 168), "nose": (120, 184, 96, 160)}
VIEWS = ("whole", "mosaic")


@dataclass
class ProbeSet:
    """A source's probes: one linear unit per (view, trunk layer), and the blend of the
    branch's logit with theirs (weights = 1 / (count x val spread) of each logit, branch first)."""
    layers: list[str]
    kernels: list[np.ndarray]   # (d, 1) per probe, on the flattened raw map
    biases: list[float]
    blend: list[float]          # branch, then one per probe
    views: list[str] = field(default_factory=lambda: ["whole"])
    summary: dict = field(default_factory=dict)
    val_logit: np.ndarray | None = None  # the blended logit of the val images it was fitted with

    @property
    def names(self) -> list[str]:
        """One "view:layer" per probe, in the order of kernels, biases and blend[1:]."""
        return [f"{v}:{n}" for v in self.views for n in self.layers]

    def logits(self, maps: list[np.ndarray]) -> np.ndarray:
        """(N, probes) probe logits of flattened maps (one array per probe)."""
        return linear_logits(maps, self.kernels, self.biases)

    def blended_logit(self, branch_logit: np.ndarray, maps: list[np.ndarray]) -> np.ndarray:
        return np.column_stack([branch_logit, self.logits(maps)]) @ np.asarray(self.blend)


def mosaic(image, name: str):
    """The symbolic mosaic view of `image` ((N, S, S, 3), S even): `MOSAIC_TILES` cropped,
    each resized to S/2 x S/2 (bilinear), tiled [left eye, right eye; mouth, nose]."""
    import keras

    size = int(image.shape[1])
    tiles = []
    for part, box in MOSAIC_TILES.items():
        top, bottom, left, right = (round(v * size / 256) for v in box)
        crop = keras.layers.Cropping2D(((top, size - bottom), (left, size - right)), name=f"{name}_{part}_crop")(image)
        tiles.append(keras.layers.Resizing(size // 2, size // 2, interpolation="bilinear",
                                           name=f"{name}_{part}_zoom")(crop))
    rows = [keras.layers.Concatenate(axis=2, name=f"{name}_mosaic_row{i}")(tiles[2 * i:2 * i + 2]) for i in (0, 1)]
    return keras.layers.Concatenate(axis=1, name=f"{name}_mosaic")(rows)


def probe_maps(model, views, layers: list[str], name: str) -> list:
    """The symbolic flattened maps every probe reads, in `ProbeSet.names` order: for "whole"
    the trunk layers of `model` itself, for "mosaic" the same layers (shared weights, a
    nested model) run on the mosaic of the input."""
    import keras

    out = []
    for view in views:
        if view == "whole":
            maps = [model.get_layer(n).output for n in layers]
        elif view == "mosaic":
            trunk = keras.Model(model.input, [model.get_layer(n).output for n in layers], name=f"{name}_trunk")
            maps = trunk(mosaic(model.input, name))
            maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
        else:
            raise ValueError(f"unknown probe view {view!r}: one of {VIEWS}")
        out += [keras.layers.Flatten(name=f"{name}_{view}_{n}_flat")(m) for n, m in zip(layers, maps)]
    return out


def trunk_maps(model, layers: list[str], views=("whole",), name: str = "fit"):
    """A Keras model: `model`'s input -> the flattened map of each probe."""
    import keras

    return keras.Model(model.input, probe_maps(model, views, layers, name))


def maps_of(net, pixels: np.ndarray) -> list[np.ndarray]:
    """Flattened maps of uint8 images, in order (one array per output of `trunk_maps`),
    through the same input path as training (`batching.predict_outputs`)."""
    from detector import batching

    out = batching.predict_outputs(net, pixels)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def fit(model, layers: list[str], train_pixels: np.ndarray, train_labels: np.ndarray,
        val_pixels: np.ndarray, val_labels: np.ndarray, val_branch_logit: np.ndarray,
        views=VIEWS) -> ProbeSet:
    """Probes on `layers` of `model` (uint8 input at its size), one per layer and view, for one
    source: fitted on the plain training images (on StyleGAN/FFHQ, 3-fold on the training
    images, adding three augmented copies of each made the blend no better on plain, JPEG 30,
    half-size or blurred held-out faces: 0.929 vs 0.934 plain), blended with the branch by
    their spreads on val. `summary` holds the val AUCs of the branch, each probe and the blend."""
    from sklearn.metrics import roc_auc_score

    net = trunk_maps(model, layers, views)
    kernels, biases = fit_linear(maps_of(net, train_pixels), train_labels)
    probes = ProbeSet(list(layers), kernels, biases, blend=[], views=list(views))
    val_logits = np.column_stack([val_branch_logit, probes.logits(maps_of(net, val_pixels))])
    probes.blend = [float(w) for w in spread_weights(val_logits)]
    blended = probes.val_logit = val_logits @ np.asarray(probes.blend)
    auc = (lambda s: float(roc_auc_score(val_labels, s))) if len(set(val_labels)) == 2 else (lambda s: None)
    probes.summary = {"layers": list(layers), "views": list(views), "training_images": int(len(train_pixels)),
                      "val_auc_branch": auc(val_logits[:, 0]),
                      "val_auc_probes": {n: auc(val_logits[:, i + 1]) for i, n in enumerate(probes.names)},
                      "val_auc_blend": auc(blended), "blend": probes.blend}
    return probes


def attach(model, branch_p, probes: ProbeSet, name: str):
    """The symbolic P(fake) of a branch (`branch_p`, (N, 1) probabilities) blended with its
    probes on `model`'s layers: sigmoid(blend . [logit(branch), probe logits])."""
    import keras

    from detector.layers import Logit

    parts = [Logit(name=f"{name}_branch_logit")(branch_p)]
    flats = probe_maps(model, probes.views, probes.layers, name)
    for probe, flat, kernel, bias in zip(probes.names, flats, probes.kernels, probes.biases):
        unit = keras.layers.Dense(1, name=f"{name}_{probe.replace(':', '_')}")
        parts.append(unit(flat))
        unit.set_weights([kernel, np.array([bias], dtype="float32")])
    blend = keras.layers.Dense(1, activation="sigmoid", use_bias=False, trainable=False, name=name)
    out = blend(keras.layers.Concatenate(name=f"{name}_logits")(parts))
    blend.set_weights([np.asarray(probes.blend, dtype="float32")[:, None]])
    return out
