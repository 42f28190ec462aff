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

from detector.runfolder import NOVELTY as NOVELTY_FILE

QUANTILE = 0.99  # of validation distances: the limit of "familiar"
LIMIT = 1.0  # a novelty above this is unfamiliar (every distance is divided by the val limit)


def unfamiliar(values) -> np.ndarray:
    """Which novelty values are past the familiar limit (the one rule every caller uses)."""
    return np.asarray(values, dtype=float) > LIMIT


def unfamiliar_share(values) -> float:
    """The share of novelty values past the limit."""
    return float(np.mean(unfamiliar(values)))


def feature_output(model, layers: tuple[str, ...] | list[str]):
    """The symbolic (N, d) channel means of `layers`' outputs, one vector per image."""
    import keras

    parts = [keras.ops.mean(model.get_layer(name).output, axis=(1, 2)) for name in layers]
    return parts[0] if len(parts) == 1 else keras.ops.concatenate(parts, axis=-1)


def feature_model(model, layers):
    """Inputs -> the features of `layers`: only the layers below them run."""
    import keras

    return keras.Model(model.inputs, feature_output(model, layers))


def extractor(model, layers):
    """A function: (N, S, S, 3) uint8 pixels at the model's size -> (N, d) features, in
    batches of 64 through one compiled forward pass of the layers below `layers`."""
    import tensorflow as tf

    net = feature_model(model, layers)
    size = tuple(model.inputs[0].shape[1:])
    forward = tf.function(lambda x: net(x, training=False), autograph=False,
                          input_signature=[tf.TensorSpec((None, *size), tf.float32)])

    def run(pixels: np.ndarray, progress: str | None = None) -> np.ndarray:
        starts = range(0, len(pixels), 64)
        if progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=progress, unit="batch", mininterval=10)
        return np.concatenate([forward(np.asarray(pixels[i:i + 64], np.float32)).numpy() for i in starts])

    return run


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


CHECK_MIN = 0.9  # a usable reference calls at least this share of the check images unfamiliar


def check_images(val_pixels: np.ndarray, n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs no face detector should vouch for, made from val images: blurred until the face
    is a smear (sigma = size / 64 px, 4 px at 256) and pure noise."""
    from detector import degrade

    rng = np.random.default_rng(seed)
    picks = val_pixels[rng.choice(len(val_pixels), min(n, len(val_pixels)), replace=False)]
    sigma = picks.shape[1] / 64
    return {"blurred": np.stack([degrade.perturb(p, "gaussian_blur", sigma) for p in picks]),
            "noise": rng.integers(0, 256, (n, *val_pixels.shape[1:]), dtype=np.uint8)}


def fit_model(model, layers, pixels: dict[str, np.ndarray], folder: str | Path,
              require_check: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """Fit on `pixels["train"]`, limit on `pixels["val"]`; returns the card's summary (with the
    share of test images called unfamiliar when a test split is given) and each split's
    novelty values in pixel order (empty when the reference is not kept), for predictions.csv.

    The reference is kept (novelty.npz in `folder`) only when it passes its own check: it must
    call blurred smears and noise unfamiliar (`CHECK_MIN`). A network trained from scratch with
    blur and JPEG augmentation can learn features that do not change under either, and then
    "familiar" would mean nothing; such a model gets no reference and no flag, and says why.
    (`require_check=False` keeps it anyway: for tests on tiny synthetic data.)"""
    extract = extractor(model, layers)
    feats = {s: extract(x, progress=f"novelty features ({s})") for s, x in pixels.items() if len(x)}
    ref = fit(feats["train"], feats["val"], layers)
    check = {f"{k}_unfamiliar": round(unfamiliar_share(ref.novelty(extract(x))), 4)
             for k, x in check_images(pixels["val"]).items()}
    usable = min(check.values()) >= CHECK_MIN or not require_check
    target = Path(folder) / NOVELTY_FILE
    if usable:
        ref.save(folder)
    else:
        target.unlink(missing_ok=True)
    summary = {"file": NOVELTY_FILE if usable else None, "usable": usable, "check": check,
               "layers": list(layers), "quantile": ref.quantile, "limit": round(ref.limit, 4),
               "n_train": int(len(feats["train"]))}
    values = {s: ref.novelty(f) for s, f in feats.items() if s != "train"}  # val (+ test)
    summary.update({f"{s}_unfamiliar": round(unfamiliar_share(v), 4) for s, v in values.items()})
    values = values if usable else {}
    if not usable:
        failed = [k.removesuffix("_unfamiliar") for k, v in check.items() if v < CHECK_MIN]
        shares = ", ".join(f"{k.removesuffix('_unfamiliar')} {v:.0%}" for k, v in check.items())
        summary["why_not"] = (f"its features do not tell {' or '.join(failed)} images from training faces "
                              f"(called unfamiliar: {shares}; at least {CHECK_MIN:.0%} needed)")
    return summary, values


def fit_folder(name_or_path, data_root: str | Path, require_check: bool = True) -> dict:
    """Fit (or refit) the reference of an already trained model folder on a data root's
    train/val/test images; records the summary in its card and each val/test image's novelty
    in its predictions.csv (dropped when the reference is not kept). Returns the summary."""
    from detector import data, runfolder, store, zoo

    card = store.read_card(name_or_path)
    model = store.load_keras_model(card["dir"])
    frames = data.ensure_splits(data.scan(data_root))
    size = int(card["input_size"])
    pixels = {s: data.load_pixels(f["path"].tolist(), size) for s, f in frames.items() if len(f)}
    layers = zoo.novelty_layers(card["architecture"], card.get("gradcam_layer"))
    summary, values = fit_model(model, layers, pixels, card["dir"], require_check)
    store.update_card(card["dir"], novelty=summary)
    preds = store.read_predictions(card["dir"])
    if preds is not None:
        by_image = {(s, rel): v for s, v_s in values.items() for rel, v in zip(frames[s]["rel"], v_s)}
        preds["novelty"] = [by_image.get((s, p), np.nan) for s, p in zip(preds["split"], preds["path"])]
        runfolder.write_predictions(preds if values else preds.drop(columns="novelty"), Path(card["dir"]))
    return summary
