"""The fit loop behind `train.py`: one recipe for every model of the zoo, writing the run
folder the dashboard reads (`detector.runfolder`, docs/architecture.md):

    model.keras, card.json, history.csv, predictions.csv (+ folds.csv with k-fold)

Backbone models train in two phases (head on a frozen base, then the top blocks with
BatchNorm kept frozen and a lower learning rate). Everything below the first fine-tuned
layer stays frozen throughout, so on a CPU its output is computed once per image and view
and cached (`cache_features`), which makes fine-tuning several times faster while the
saved model is still the whole network.
"""
from __future__ import annotations

import logging
import platform
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from detector import data, evaluation, novelty, runfolder, store, zoo
from detector.batching import predict_pixels
from detector.runfolder import write_predictions

log = logging.getLogger(__name__)


def _opt(default, help: str, *, factory=MISSING, **cli):
    """A TrainConfig field and its `train.py` option: `help`, and `flags` / `metavar` where
    the option differs from `--field-name`, `choices` (a function giving them), `cli=False`
    for none (train.py builds its parser from these)."""
    return field(default=default, default_factory=factory, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Every setting of a training run. `train.py` makes one option per field (from the
    field's metadata) and a recipe (`recipes/NAME.toml`, `detector.recipes`) sets the same
    names; `settings()` is what a card records of them."""
    model: str = _opt(MISSING, "zoo model to train", choices=lambda: sorted(zoo.REGISTRY))
    data: str = _opt(MISSING, "folder with real/ and fake/, or with train/ val/ test/")
    out: str = _opt(MISSING, "run folder (default: runs/<recipe name>, else runs/<model>)")
    epochs: int = _opt(10, "epochs (head phase for backbones)")
    fine_tune_epochs: int = _opt(0, "second phase for backbones")
    img_size: int | None = _opt(None, "square input size (default: the model's)")
    batch_size: int = _opt(32, "batch size")
    learning_rate: float = _opt(1e-3, "learning rate (head phase)", flags=("--lr",), metavar="LR")
    fine_tune_lr: float = _opt(1e-4, "learning rate of the fine-tune phase")
    fine_tune_from: str | None = _opt(None, "first layer unfrozen in phase 2 (default: the zoo's)", metavar="LAYER")
    kfold: int = _opt(0, "also train K stratified folds -> folds.csv", metavar="K")
    seed: int = _opt(42, "random seed (splits, initialisation, augmentation)")
    augment: bool = _opt(True, "augment training images")
    aug_strength: float = _opt(1.0, "scale of the augmentations")
    cache_features: bool = _opt(True, "cache the frozen base's output per image and view (--no-cache-features: "
                                      "recompute it every step; slower, for augmentations the cache cannot hold)")
    cache_views: int = _opt(2, "cached views per image (1 plain + augmented)")
    balance_sources: float = _opt(0.5, "power of the per-source reweighting; 0 = off")
    patience: int = _opt(3, "early-stopping patience in epochs")
    pretrained: bool = _opt(True, "start from ImageNet weights where they exist (--no-pretrained: random init)")
    max_train: int | None = _opt(None, "use at most this many training images (quick experiments, tests)")
    self_blend: float = _opt(0.0, "add self-blended pseudo-fakes made from this fraction of the real training "
                                  "images (Shiohara & Yamasaki 2022; helps on unseen kinds of fakes); above 1, "
                                  "several differently blended copies per real image", metavar="FRACTION")
    train_sources: list[str] | None = _opt(None, "train and validate on these sources only (MANIFEST.csv "
                                                 "'source'); the test split keeps every source: a "
                                                 "leave-one-source-out run", metavar="SOURCE")
    ema: float = _opt(0.0, "backbones' fine-tune phase: judge and keep an exponential moving average of the "
                           "weights (e.g. 0.998; 0 = off)", metavar="MOMENTUM")
    label_smoothing: float = _opt(0.0, "train towards 1 - S/2 and S/2 instead of 1 and 0 (e.g. 0.1; 0 = off)",
                                  metavar="S")
    average_last: int = _opt(0, "last phase: also try the mean weights of its last N epochs (stochastic weight "
                                "averaging) and keep them if they score at least as well on val as the best "
                                "epoch", metavar="N")
    mixup: float = _opt(0.0, "backbones with cached features: mix each training sample's features and label "
                             "with a partner's, weight ~ Beta(ALPHA, ALPHA) (manifold mixup, e.g. 0.4; 0 = off)",
                        metavar="ALPHA")
    init_from: str | None = _opt(None, "start from the weights of a finished run (its folder or model.keras; "
                                       "same architecture)", metavar="RUN")
    verbose: int | None = _opt(None, "Keras progress output: 0 none, 1 a bar, 2 a line per epoch "
                                     "(default: 1 on a terminal, else 2)")
    recipe: str | None = _opt(None, "a recipe file (recipes/NAME.toml) of these settings; options given "
                                    "beside it override its values", metavar="FILE")
    extra: dict = _opt(MISSING, "fields added to the card's training record", factory=dict, cli=False)


# Fields that say where a run is written, how chatty it is or where its settings came from:
# not settings of the run (a card's `training` and a recipe hold every other field).
NOT_SETTINGS = ("out", "verbose", "recipe", "extra")


def settings(cfg: TrainConfig) -> dict:
    """The settings a card records for a run (and a recipe may set): every field but
    NOT_SETTINGS."""
    return {k: v for k, v in asdict(cfg).items() if k not in NOT_SETTINGS}


# --- callbacks ------------------------------------------------------------------------

def _history_logger(path: Path, phase: str, offset: list[int], append: bool):
    """Keras' CSVLogger, plus the phase and a run-wide epoch number on every row, so
    history.csv spans both phases (added to a copy: the other callbacks see plain logs)."""
    import keras

    class PhaseCSVLogger(keras.callbacks.CSVLogger):
        def on_epoch_end(self, epoch, logs=None):
            offset[0] += 1
            logs = dict(logs or {})
            logs.setdefault("learning_rate",
                            float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            super().on_epoch_end(epoch, {**logs, "phase": phase, "run_epoch": offset[0]})

    return PhaseCSVLogger(str(path), append=append)


SOURCE_AUC = "val_source_auc"


def _source_auc(val_data, y: np.ndarray, sources: np.ndarray | None):
    """A callback adding the validation AUC of every source (`val_auc_<source>`) and their
    mean (`val_source_auc`) to the epoch logs; None unless two or more val sources hold both
    classes. Pooled val AUC is ruled by the biggest source (openforensics is 6 of 7 val
    images here), so choosing the best epoch by it lets the minority kind of fake slide; the
    mean over sources weighs each kind of fake alike."""
    import keras
    from sklearn.metrics import roc_auc_score

    if sources is None:
        return None
    names = [s for s in sorted(set(sources)) if len(set(y[sources == s])) == 2]
    if len(names) < 2:
        return None

    class SourceAUC(keras.callbacks.Callback):
        def score(self) -> dict:
            """The per-source val AUCs of the model's current weights, and their mean."""
            p = self.model.predict(val_data, verbose=0).reshape(-1)
            aucs = {s: float(roc_auc_score(y[sources == s], p[sources == s])) for s in names}
            return {**{f"val_auc_{s}": a for s, a in aucs.items()}, SOURCE_AUC: float(np.mean(list(aucs.values())))}

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs.update(self.score())

    return SourceAUC()


def _callbacks(out: Path, phase: str, offset: list[int], patience: int, append: bool, source_auc=None,
               ema: bool = False):
    """Early stopping and the best checkpoint follow the mean per-source val AUC when the
    val split has two or more sources (`source_auc`), else the pooled val AUC. With `ema`
    the averaged weights are swapped in at each epoch's end, so validation, the per-source
    AUC, early stopping and the checkpoint all judge (and keep) the averaged network."""
    import keras

    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    monitor = SOURCE_AUC if source_auc is not None else "val_auc"
    return [
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []),
        *([source_auc] if source_auc is not None else []),  # before the others: they read its logs
        keras.callbacks.TensorBoard(log_dir=str(out / "logs" / phase), write_graph=False),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=max(1, patience // 2),
                                          min_lr=1e-6, verbose=1),
        keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / f"best_{phase}.weights.h5"),
                                        monitor=monitor, mode="max", save_best_only=True,
                                        save_weights_only=True),
        _history_logger(out / runfolder.HISTORY, phase, offset, append),
    ]


class _WeightAverage:
    """A Keras callback keeping the running mean of the weights at the end of each epoch from
    `first` (0-based) on: stochastic weight averaging (Izmailov et al., 2018) over the last
    epochs of one run. Averaging two fine-tuned networks that share their start ("model soup")
    helped here; this gets that from a single run. BatchNorm is frozen while fine-tuning, so
    the mean needs no statistics re-estimated."""

    def __new__(cls, first: int):
        import keras

        class WeightAverage(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.first, self.epochs, self.mean = first, [], None

            def on_epoch_end(self, epoch, logs=None):
                if epoch < self.first:
                    return
                w = [np.asarray(v, dtype="float64") for v in self.model.get_weights()]
                n = len(self.epochs)
                self.mean = w if self.mean is None else [(m * n + v) / (n + 1) for m, v in zip(self.mean, w)]
                self.epochs.append(epoch)

            def weights(self) -> list[np.ndarray]:
                return [m.astype(v.dtype) for m, v in zip(self.mean, self.model.get_weights())]

        return WeightAverage()


def _keep_average(model, averager, score, kept_value: float | None, offset: int) -> dict:
    """Swap in the averaged weights when they score at least as well on val as the epoch
    EarlyStopping kept (`score()` gives the monitored value of the current weights);
    returns what was tried, for the card."""
    if averager.mean is None or len(averager.epochs) < 2:
        return {}
    kept = model.get_weights()
    model.set_weights(averager.weights())
    value = float(score())
    keep = kept_value is None or value >= kept_value
    if not keep:
        model.set_weights(kept)
    first, last = (offset + e + 1 for e in (averager.epochs[0], averager.epochs[-1]))
    print(f"mean weights of epochs {first}-{last}: {value:.4f} on val vs {kept_value}: "
          f"{'kept' if keep else 'not kept'}", flush=True)
    return {"averaged_epochs": f"{first}-{last}", "averaged_value": value, "kept_average": bool(keep)}


def _compile(model, lr: float, ema: float = 0.0, label_smoothing: float = 0.0):
    """Adam; with `ema` in (0, 1) it also keeps an exponential moving average of the weights
    (Polyak averaging: a cheap, one-run cousin of averaging several fine-tuned networks).
    `label_smoothing` trains towards 1 - s/2 and s/2 instead of 1 and 0, so the loss stops
    rewarding ever more confident scores on images already right (the fine-tuned top blocks
    reach a training loss near 0.03 here while val stalls)."""
    import keras

    optimizer = keras.optimizers.Adam(lr, use_ema=ema > 0, ema_momentum=ema or 0.99)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy", keras.metrics.AUC(name="auc")])


# --- feature cache for the frozen bottom of a backbone -------------------------------------

def mix_batch(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, alpha: float, rng):
    """Manifold mixup (Verma et al. 2019) on cached features: each sample becomes
    lam * itself + (1 - lam) * a shuffled partner, labels and weights alike, with
    lam ~ Beta(alpha, alpha) folded to >= 0.5 so every sample stays mostly itself. A
    regulariser for the top blocks, which otherwise fit the training set to a loss near 0."""
    lam = rng.beta(alpha, alpha, len(y))
    lam = np.maximum(lam, 1 - lam).astype("float32")
    partner = rng.permutation(len(y))
    shape = (-1,) + (1,) * (x.ndim - 1)
    x = lam.reshape(shape) * x + (1 - lam).reshape(shape) * x[partner]
    y = lam * y + (1 - lam) * y[partner]
    if w is not None:
        w = lam * w + (1 - lam) * w[partner]
    return x, y, w


class _CachedViews:
    """A keras PyDataset over cached bottom features: each epoch draws one of the cached
    views (the plain image, then augmented copies) per sample, in a seeded shuffle; with
    `mixup` > 0 (training only) each batch is mixed by `mix_batch`."""

    def __new__(cls, views, y, w, batch_size, seed, training, mixup: float = 0.0):
        import keras

        class Views(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.rng = np.random.default_rng(seed)
                self.mix_rng = np.random.default_rng(seed + 1)
                self._draw()

            def _draw(self):
                n = len(y)
                self.order = self.rng.permutation(n) if training else np.arange(n)
                self.view = self.rng.integers(0, len(views), n) if training else np.zeros(n, int)

            def __len__(self):
                return int(np.ceil(len(y) / batch_size))

            def __getitem__(self, i):
                idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
                feats = np.stack([views[v][j] for v, j in zip(self.view[idx], idx)]).astype("float32")
                labels, weights = y[idx].astype("float32"), None if w is None else w[idx]
                if training and mixup > 0:
                    feats, labels, weights = mix_batch(feats, labels, weights, mixup, self.mix_rng)
                return (feats, labels) + ((weights,) if weights is not None else ())

            def on_epoch_end(self):
                if training:
                    self._draw()

        return Views()


def _bottom_features(bottom, x: np.ndarray, cfg: TrainConfig, augment: bool, desc: str):
    """The frozen bottom's output for every image, in order: plain, or one augmented view
    (per-image perturbations of `data.augment_image`; the batch geometry is left out)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x)
    if augment:
        ds = ds.map(lambda im: data.augment_image(im, cfg.aug_strength), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda im: tf.cast(im, tf.float32))
    log.info("caching frozen features: %s", desc)
    print(f"caching frozen-base features ({desc}, {len(x)} images)", flush=True)
    return bottom.predict(ds.batch(64).prefetch(tf.data.AUTOTUNE), verbose=_verbose(cfg)).astype("float16")


def _verbose(cfg: TrainConfig) -> int:
    if cfg.verbose is not None:
        return cfg.verbose
    return 1 if sys.stdout.isatty() else 2


# --- fitting ---------------------------------------------------------------------------

def _set_trainable(model, first_layer: str | None, head_from: str | None = None):
    """Train layers from `first_layer` on (None: all); BatchNorm stays frozen in backbones.

    Only BatchNorm layers of the new head (from `head_from` on, e.g. xception's `head_bn`)
    train; matching by position, not name, because EfficientNet-Lite0's backbone also
    has a layer named `head_bn`."""
    names = [l.name for l in model.layers]
    start = names.index(first_layer) if first_layer else 0
    head = names.index(head_from) if head_from in names else len(names)
    for i, layer in enumerate(model.layers):
        trainable = i >= start
        if first_layer and layer.__class__.__name__ == "BatchNormalization" and i < head:
            trainable = False
        layer.trainable = trainable


def fit(model, spec: zoo.ModelSpec, cfg: TrainConfig, out: Path, train: tuple, val: tuple) -> dict:
    """Train `model` in place. train/val = (x uint8, y, w, sources). Returns the phases run
    and, with `cfg.average_last`, what the mean weights of the last epochs scored on val."""
    x_tr, y_tr, w_tr, _ = train
    x_va, y_va, _, s_va = val
    if not spec.backbone:
        val_data = data.make_dataset(x_va, y_va, batch_size=64)
        train_data = data.make_dataset(x_tr, y_tr, w_tr, batch_size=cfg.batch_size, training=True,
                                       augment=cfg.augment, seed=cfg.seed, strength=cfg.aug_strength)
        return _run_phases(model, model, [("train", None, cfg.epochs, cfg.learning_rate)],
                           train_data, val_data, (y_va, s_va), cfg, out)

    import keras

    split_layer = cfg.fine_tune_from or spec.fine_tune_from
    if cfg.cache_features:
        split = model.get_layer(split_layer).input
        bottom = keras.Model(model.input, split)
        top = keras.Model(split, model.output)
        views = [_bottom_features(bottom, x_tr, cfg, False, "plain")]
        views += [_bottom_features(bottom, x_tr, cfg, True, f"augmented view {v}")
                  for v in range(1, cfg.cache_views if cfg.augment else 1)]
        f_va = _bottom_features(bottom, x_va, cfg, False, "validation")
        trainer = top
        train_data = _CachedViews(views, y_tr, w_tr, cfg.batch_size, cfg.seed, True, cfg.mixup)
        val_data = _CachedViews([f_va], y_va, None, 64, cfg.seed, False)
    else:
        trainer = model
        train_data = data.make_dataset(x_tr, y_tr, w_tr, batch_size=cfg.batch_size, training=True,
                                       augment=cfg.augment, seed=cfg.seed, strength=cfg.aug_strength)
        val_data = data.make_dataset(x_va, y_va, batch_size=64)
    phases = [("head", spec.head_from, cfg.epochs, cfg.learning_rate),
              ("fine_tune", split_layer, cfg.fine_tune_epochs, cfg.fine_tune_lr)]
    return _run_phases(model, trainer, phases, train_data, val_data, (y_va, s_va), cfg, out, spec.head_from)


def _run_phases(model, trainer, phases, train_data, val_data, val_labels, cfg: TrainConfig, out: Path,
                head_from: str | None = None) -> dict:
    """Run each (name, first trained layer, epochs, lr) phase with `trainer` (the whole model, or
    its top on cached features). EMA acts in the fine-tune phase only (a fresh head would be
    dragged back to its random start); weight averaging in the last phase."""
    import keras

    y_va, s_va = val_labels
    source_auc = _source_auc(val_data, y_va, s_va)
    offset, verbose, done, averaged = [0], _verbose(cfg), [], {}
    phases = [ph for ph in phases if ph[2] > 0]
    for i, (phase, first, epochs, lr) in enumerate(phases):
        last = i == len(phases) - 1
        print(f"phase {phase}: {epochs} epochs from layer {first}, lr {lr}", flush=True)
        _set_trainable(model, first, head_from)
        ema = cfg.ema if phase == "fine_tune" else 0.0
        _compile(trainer, lr, ema, cfg.label_smoothing)
        callbacks = _callbacks(out, phase, offset, cfg.patience, bool(done), source_auc, ema > 0)
        averager = _WeightAverage(epochs - cfg.average_last) if last and cfg.average_last > 1 else None
        start = offset[0]
        trainer.fit(train_data, validation_data=val_data, epochs=epochs,
                    callbacks=callbacks + ([averager] if averager else []), verbose=verbose)
        done.append(phase)
        if averager is not None:
            def score():  # the value EarlyStopping monitors, for the current weights
                if source_auc is not None:
                    return source_auc.score()[SOURCE_AUC]
                return trainer.evaluate(val_data, verbose=0, return_dict=True)["auc"]

            stopper = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
            averaged = _keep_average(trainer, averager, score, stopper.best, start)
    return {"phases": done, **averaged}


# --- the run folder ---------------------------------------------------------------------

def kept_epoch(history: pd.DataFrame) -> dict:
    """Which epoch the saved model is: the best of the last phase by the monitored value
    (mean per-source val AUC when logged, else pooled val AUC), as EarlyStopping restores it."""
    if history.empty or "phase" not in history:
        return {}
    last = history[history["phase"] == history["phase"].iloc[-1]]
    by = SOURCE_AUC if SOURCE_AUC in last and last[SOURCE_AUC].notna().any() else "val_auc"
    if by not in last or last[by].isna().all():
        return {}
    best = last.loc[last[by].idxmax()]
    return {"kept_epoch": int(best["run_epoch"]), "kept_by": by, "kept_value": float(best[by])}


def _versions() -> dict:
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


def _data_fingerprint(root: Path, frames: dict[str, pd.DataFrame]) -> dict:
    import hashlib

    h = hashlib.sha1()
    for split in data.SPLITS:
        for rel in sorted(frames[split]["rel"]):
            h.update(rel.encode())
    manifest = next((p for p in (root / "MANIFEST.csv", root.parent / "MANIFEST.csv") if p.is_file()), None)
    return {"path": str(root), "files_sha1": h.hexdigest(),
            "manifest_sha1": hashlib.sha1(manifest.read_bytes()).hexdigest() if manifest else None,
            "counts": {s: {n: int((f["label"] == i).sum()) for i, n in enumerate(data.CLASS_NAMES)}
                       for s, f in frames.items()}}


def _select(frame: pd.DataFrame, cfg: TrainConfig) -> pd.DataFrame:
    if cfg.max_train and len(frame) > cfg.max_train:
        from sklearn.model_selection import train_test_split

        frame, _ = train_test_split(frame, train_size=cfg.max_train, random_state=cfg.seed,
                                    stratify=frame["label"].astype(str) + frame["source"])
        frame = frame.reset_index(drop=True)
    return frame


def _xyw(frame: pd.DataFrame, x: np.ndarray, cfg: TrainConfig, training: bool = False):
    """Pixels, labels, per-sample weights and sources; for a training set, plus the self-blended
    pseudo-fakes (`cfg.self_blend`) made from its real images, as their own source."""
    if training and cfg.self_blend > 0:
        from detector import selfblend

        real = np.flatnonzero(frame["label"].to_numpy() == 0)
        used, fakes = selfblend.make_pseudo_fakes(x[real], cfg.self_blend, seed=cfg.seed)
        extra = frame.iloc[real[used]].assign(label=1, source=selfblend.SOURCE)
        frame = pd.concat([frame, extra], ignore_index=True)
        x = np.concatenate([x, fakes])
        print(f"self-blend: {len(fakes)} pseudo-fakes from {len(real)} real training images", flush=True)
    w = data.source_weights(frame, cfg.balance_sources) if cfg.balance_sources else None
    sources = frame["source"].astype(str).to_numpy() if "source" in frame else None
    return x, frame["label"].to_numpy("float32"), w, sources


def _keep_sources(frame: pd.DataFrame, sources: list[str] | None) -> pd.DataFrame:
    if not sources:
        return frame
    if "source" not in frame or not frame["source"].isin(sources).any():
        raise ValueError(f"no images of sources {sources}; the data has {sorted(set(frame.get('source', [])))}")
    return frame[frame["source"].isin(sources)].reset_index(drop=True)


def _relative(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as predictions.csv names images: by their path relative to the data root."""
    return frame.drop(columns="path").rename(columns={"rel": "path"})


def run_kfold(cfg: TrainConfig, spec, frame: pd.DataFrame, x: np.ndarray, out: Path) -> pd.DataFrame:
    """K stratified folds of the training split: each fold trains on K-1 parts and is
    scored on the held-out part. Returns the held-out predictions; writes folds.csv."""
    import keras

    rows, preds = [], []
    for k, (tr, ho) in enumerate(data.stratified_folds(frame, cfg.kfold, cfg.seed), start=1):
        print(f"fold {k}/{cfg.kfold}: {len(tr)} train, {len(ho)} held out", flush=True)
        keras.utils.set_random_seed(cfg.seed + k)
        model = spec.build(cfg.img_size, pretrained=cfg.pretrained)
        fold_dir = out / "folds" / f"fold{k}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        fit(model, spec, cfg, fold_dir, _xyw(frame.iloc[tr], x[tr], cfg, training=True),
            _xyw(frame.iloc[ho], x[ho], cfg))
        p = predict_pixels(model, x[ho])
        y = frame["label"].to_numpy()[ho]
        m = evaluation.binary_metrics(y, p, 0.5)
        rows.append({"fold": k, "n_train": len(tr), "n_val": len(ho),
                     **{key: m[key] for key in ("accuracy", "precision", "recall", "f1", "auc", "ap", "eer")},
                     **m["confusion"]})
        preds.append(_relative(frame.iloc[ho]).assign(split="cv", fold=k, p_raw=p, p_fake=p))
        del model
        keras.backend.clear_session()
    pd.DataFrame(rows).to_csv(out / runfolder.FOLDS, index=False)
    return pd.concat(preds, ignore_index=True)


def calibrate(preds: pd.DataFrame) -> tuple[dict, pd.DataFrame, dict]:
    """Fit calibration (temperature + bias) and the decision threshold on the val rows of
    `preds` (columns split, label 0/1, source, p_raw); score every row and compute the
    card metrics per split. Val only: test never tunes anything."""
    val = preds[preds["split"] == "val"]
    temperature, bias = evaluation.fit_platt(val["label"], val["p_raw"])
    preds = preds.assign(p_fake=evaluation.apply_temperature(preds["p_raw"], temperature, bias))
    threshold = evaluation.choose_threshold(val["label"], preds.loc[val.index, "p_fake"])
    metrics = {}
    for split in ("val", "test"):
        part = preds[preds["split"] == split]
        if part.empty:
            continue
        m = evaluation.evaluate_predictions(part[["label", "p_fake", "source"]], threshold)
        m["ece"] = evaluation.expected_calibration_error(part["label"], part["p_fake"])
        m["ece_raw"] = evaluation.expected_calibration_error(part["label"], part["p_raw"])
        metrics[split] = m
    calib = {"threshold": float(threshold), "temperature": temperature, "bias": bias,
             "calibration": "platt (temperature + bias) on val; threshold = best balanced accuracy on val"}
    return calib, preds, evaluation.to_jsonable(metrics)


def recalibrate(folder: str | Path, rescore=None) -> dict:
    """Refit calibration and threshold of a finished run from its stored val predictions
    (no retraining, no images needed) and rewrite its card and predictions.csv.
    `rescore(rows)`, when given, first gives the val and test rows a new `p_raw` (a model
    changed after training: `experts.add_clip_expert`)."""
    folder = Path(folder)
    preds = pd.read_csv(folder / runfolder.PREDICTIONS, keep_default_na=False)
    preds["label"] = preds["label"].map({n: i for i, n in enumerate(data.CLASS_NAMES)})
    scored = preds[preds["split"].isin(["val", "test"])]
    if rescore is not None:
        scored = scored.assign(p_raw=rescore(scored))
    calib, scored, metrics = calibrate(scored)
    write_predictions(pd.concat([scored, preds[~preds["split"].isin(["val", "test"])]], ignore_index=True), folder)
    return store.update_card(folder, **calib, metrics=metrics)


def load_run_weights(model, run: str | Path) -> None:
    """Start `model` from the weights of a finished run (its folder or model.keras): same
    architecture, any input size (the networks are convolutional up to a pooled head)."""
    import keras

    from detector import layers  # noqa: F401  (custom layers)

    path = Path(run)
    path = path / runfolder.MODEL_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"--init-from: no {runfolder.MODEL_FILE} at {path}")
    source = keras.saving.load_model(path, compile=False, safe_mode=True)
    mine, theirs = model.get_weights(), source.get_weights()
    if [w.shape for w in mine] != [w.shape for w in theirs]:
        raise ValueError(f"--init-from: {path} is a {source.name} with other weights than {model.name}; "
                         "it must be the same architecture")
    model.set_weights(theirs)


def save_for_serving(model, path: Path) -> None:
    """model.keras without the optimizer state (Adam's moments would triple the file):
    saved, reloaded uncompiled, saved again, then deflated (Keras stores its zip
    uncompressed; float32 weights deflate by about 10% and load the same)."""
    import keras

    from detector import layers  # noqa: F401  (custom layers)

    model.save(path)
    keras.saving.load_model(path, compile=False, safe_mode=True).save(path)
    deflate_zip(path)


def deflate_zip(path: Path) -> None:
    """Rewrite a zip archive (a .keras file) with every member deflated, atomically."""
    import zipfile

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    tmp.replace(path)


def train(cfg: TrainConfig) -> dict:
    """Train `cfg.model` on `cfg.data` and write the run folder `cfg.out`; returns the card."""
    import keras

    t0 = time.time()
    spec = zoo.get_spec(cfg.model)
    if cfg.mixup and not (spec.backbone and cfg.cache_features):
        raise ValueError("--mixup mixes cached backbone features: it needs a backbone model "
                         f"({cfg.model} is {'one' if spec.backbone else 'not'}) and the feature cache")
    size = cfg.img_size or spec.input_size
    cfg.img_size = size
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / runfolder.HISTORY).unlink(missing_ok=True)
    keras.utils.set_random_seed(cfg.seed)

    root = Path(cfg.data).expanduser().resolve()
    frames = data.ensure_splits(data.scan(root), seed=cfg.seed)
    frames["train"] = _select(_keep_sources(frames["train"], cfg.train_sources), cfg)
    frames["val"] = _keep_sources(frames["val"], cfg.train_sources)  # test keeps every source
    if frames["val"].empty:
        raise ValueError("no validation images: the threshold and early stopping need a val split")
    pixels = {s: data.load_pixels(f["path"].tolist(), size) for s, f in frames.items() if len(f)}

    cv_preds = None
    if cfg.kfold and cfg.kfold > 1:
        cv_preds = run_kfold(cfg, spec, frames["train"], pixels["train"], out)
        keras.utils.set_random_seed(cfg.seed)

    model = spec.build(size, pretrained=cfg.pretrained)
    if cfg.init_from:
        load_run_weights(model, cfg.init_from)
    t_fit = time.time()
    fitted = fit(model, spec, cfg, out, _xyw(frames["train"], pixels["train"], cfg, training=True),
                 _xyw(frames["val"], pixels["val"], cfg))
    fit_seconds = time.time() - t_fit
    history = runfolder.read_csv(out, runfolder.HISTORY)
    history = history if history is not None else pd.DataFrame()
    training = {
        **settings(cfg),
        **fitted,
        "epochs_run": int(len(history)),
        "best_val_auc": float(history["val_auc"].max()) if "val_auc" in history else None,
        **kept_epoch(history),
        "fit_seconds": round(fit_seconds, 1),
    }
    return write_run(model, cfg, spec.name, spec.description, spec.gradcam_layer, training, root, frames,
                     pixels, t0, cv_preds)


def write_run(model, cfg: TrainConfig, architecture: str, description: str, gradcam_layer: str | None,
              training: dict, root: Path, frames: dict[str, pd.DataFrame], pixels: dict[str, np.ndarray],
              t0: float, cv_preds: pd.DataFrame | None = None, experts_recipe: dict | None = None) -> dict:
    """Score val and test with the finished `model`, calibrate on val, and write the run folder
    `cfg.out`: predictions.csv, model.keras and card.json (history.csv is already there).
    One ending for every kind of run, so every card reads the same; the card's `recipe` is
    `cfg`'s resolved settings (+ `experts_recipe`, a source-experts run's [experts] table).
    Returns the card."""
    out = Path(cfg.out)
    familiarity, novelties = None, {}
    if "train" in pixels and len(pixels["train"]):
        familiarity, novelties = novelty.fit_model(model, zoo.novelty_layers(architecture, gradcam_layer),
                                                   {s: pixels[s] for s in ("train", "val", "test") if s in pixels}, out)
        print(f"novelty reference: {'kept' if familiarity['usable'] else 'not kept: ' + familiarity['why_not']}",
              flush=True)
    raw = {s: predict_pixels(model, pixels[s]) for s in ("val", "test") if s in pixels}
    scored = pd.concat([_relative(frames[s]).assign(p_raw=raw[s], **({"novelty": novelties[s]} if s in novelties else {}))
                        for s in raw], ignore_index=True)
    calib, scored, metrics = calibrate(scored)
    preds = pd.concat([scored, cv_preds] if cv_preds is not None else [scored], ignore_index=True)
    write_predictions(preds, out)

    model_path = out / runfolder.MODEL_FILE
    save_for_serving(model, model_path)
    card = {
        "name": out.name,
        "architecture": architecture,
        "description": description,
        "input_size": cfg.img_size,
        "params": int(model.count_params()),
        "file_mb": round(model_path.stat().st_size / 1e6, 2),
        "gradcam_layer": gradcam_layer,
        "novelty": familiarity,
        **calib,
        "label_names": list(data.CLASS_NAMES),
        "training": {
            **training,
            "total_seconds": round(time.time() - t0, 1),
            "command": " ".join(sys.argv) if Path(sys.argv[0]).name == "train.py" else None,
            **cfg.extra,
        },
        "recipe": runfolder.recipe_entry(cfg.recipe, settings(cfg), experts_recipe),
        "data": _data_fingerprint(root, frames),
        "metrics": evaluation.to_jsonable(metrics),
        "kfold": cfg.kfold or None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    return runfolder.write_card(out, card)
