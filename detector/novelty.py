"""How unlike the training faces is a face? A detector answers for any input, with the same
confidence for a face like its training crops as for a blurred thumbnail, a drawing or a
photo of a coffee cup. This module says when an answer comes from outside what the model knows.

The measure is a Mahalanobis distance (Lee et al., NeurIPS 2018): the channel means of a
few of the model's own feature maps (an early, a middle and the last frozen stage, so both
texture and content count) are compared with a Gaussian fitted to every training image, with
a Ledoit-Wolf covariance. The limit is the 99th percentile of the validation images'
distances, so about 1 in 100 ordinary faces is called unfamiliar; `novelty` is the distance
divided by that limit (above 1: unfamiliar). The reference is a few hundred kilobytes
(`novelty.npz` beside model.keras) and its features come from the scoring forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NOVELTY_FILE = "novelty.npz"
QUANTILE = 0.99  # of validation distances: the limit of "familiar"


def feature_output(model, layers: tuple[str, ...] | list[str]):
    """The symbolic (N, d) channel means of `layers`' outputs, one vector per image."""
    import keras

    parts = [keras.ops.mean(model.get_layer(name).output, axis=(1, 2)) for name in layers]
    return parts[0] if len(parts) == 1 else keras.ops.concatenate(parts, axis=-1)


def feature_model(model, layers):
    """Inputs -> the features of `layers`: only the layers below them run."""
    import keras

    return keras.Model(model.inputs, feature_output(model, layers))


def extract(model, layers, pixels: np.ndarray, batch_size: int = 64, progress: str | None = None) -> np.ndarray:
    """(N, S, S, 3) uint8 pixels at the model's size -> (N, d) features, in batches."""
    import tensorflow as tf

    net = feature_model(model, layers)
    forward = tf.function(lambda x: net(x, training=False), autograph=False)
    starts = range(0, len(pixels), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=progress, unit="batch", mininterval=10)
    return np.concatenate([forward(np.asarray(pixels[i:i + batch_size], np.float32)).numpy() for i in starts])


@dataclass(frozen=True)
class NoveltyReference:
    """A Gaussian over training features and the validation limit of its distance."""
    layers: tuple[str, ...]
    mean: np.ndarray     # (d,)
    whiten: np.ndarray   # (d, d): distance = |(x - mean) @ whiten| (a Cholesky factor of the precision)
    limit: float         # distance at QUANTILE of the validation images
    quantile: float = QUANTILE

    def distance(self, features: np.ndarray) -> np.ndarray:
        return np.linalg.norm((np.asarray(features, np.float64) - self.mean) @ self.whiten, axis=1)

    def novelty(self, features: np.ndarray) -> np.ndarray:
        """Distance / limit: above 1 is further from the training faces than `quantile` of val."""
        return self.distance(features) / self.limit

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / NOVELTY_FILE
        np.savez(path, layers=np.array(self.layers), mean=self.mean.astype("float32"),
                 whiten=self.whiten.astype("float32"), limit=np.float64(self.limit),
                 quantile=np.float64(self.quantile))
        return path


def load(folder: str | Path) -> NoveltyReference | None:
    """The reference stored beside a model, or None when the folder has none."""
    path = Path(folder) / NOVELTY_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return NoveltyReference(tuple(str(s) for s in z["layers"]), z["mean"].astype(np.float64),
                                z["whiten"].astype(np.float64), float(z["limit"]), float(z["quantile"]))


def fit(train_features: np.ndarray, val_features: np.ndarray, layers, quantile: float = QUANTILE) -> NoveltyReference:
    """Gaussian on the training features (Ledoit-Wolf shrinkage keeps the covariance
    invertible with few images), limit from the validation features."""
    from sklearn.covariance import LedoitWolf

    train_features = np.asarray(train_features, np.float64)
    mean = train_features.mean(0)
    cov = LedoitWolf().fit(train_features - mean).covariance_
    cov += np.eye(len(cov)) * (1e-6 * np.trace(cov) / len(cov) + 1e-12)  # constant features stay invertible
    precision = np.linalg.inv(cov)
    whiten = np.linalg.cholesky((precision + precision.T) / 2)
    unscaled = NoveltyReference(tuple(layers), mean, whiten, 1.0, quantile)
    limit = float(np.quantile(unscaled.distance(val_features), quantile))
    return NoveltyReference(tuple(layers), mean, whiten, limit, quantile)


def fit_model(model, layers, pixels: dict[str, np.ndarray], folder: str | Path) -> dict:
    """Fit on `pixels["train"]`, limit on `pixels["val"]`, write novelty.npz into `folder`; returns
    the card's summary, with the share of test images called unfamiliar when a test split is given."""
    feats = {s: extract(model, layers, x, progress=f"novelty features ({s})") for s, x in pixels.items() if len(x)}
    ref = fit(feats["train"], feats["val"], layers)
    ref.save(folder)
    summary = {"file": NOVELTY_FILE, "layers": list(layers), "quantile": ref.quantile, "limit": round(ref.limit, 4),
               "n_train": int(len(feats["train"])),
               "val_unfamiliar": round(float(np.mean(ref.novelty(feats["val"]) > 1)), 4)}
    if "test" in feats:
        summary["test_unfamiliar"] = round(float(np.mean(ref.novelty(feats["test"]) > 1)), 4)
    return summary


def fit_folder(name_or_path, data_root: str | Path) -> dict:
    """Fit (or refit) the reference of an already trained model folder on a data root's
    train/val/test images; records the summary in its card. Returns the summary."""
    from detector import data, store, zoo

    card = store.read_card(name_or_path)
    model = store.load_keras_model(card["dir"])
    frames = data.ensure_splits(data.scan(data_root))
    size = int(card["input_size"])
    pixels = {s: data.load_pixels(f["path"].tolist(), size) for s, f in frames.items() if len(f)}
    layers = zoo.novelty_layers(card["architecture"], card.get("gradcam_layer"))
    summary = fit_model(model, layers, pixels, card["dir"])
    store.update_card(card["dir"], novelty=summary)
    return summary
