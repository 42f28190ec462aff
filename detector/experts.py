"""Source experts: one network that routes each face to a branch trained on its kind of image.

A face swap blended into a photo and a whole face drawn by a GAN leave different traces, and
one network fitted to both serves neither best: trained on the 600 StyleGAN faces alone, the
same Lite0 recipe catches more of them on unseen images than the joint network does. So:

1. a *trunk expert* is trained on the first (largest) source, as any run of `train.py`;
2. every other source gets a *branch*: a copy of the trunk expert whose layers from
   `branch_from` on are fine-tuned on that source alone (`init_from` + `train_sources`), so
   everything below `branch_from` stays the trunk's and is computed once per image;
3. a *router* (multinomial logistic regression on the trunk's pooled features) learns which
   source an image looks like; it is fitted on training images, checked on val;
4. one Keras model is assembled: trunk -> router and branches -> `SourceMixture`, which
   calibrates each branch with its own val fit and mixes them by the router's probabilities.

The result is a normal run folder (model.keras, card.json, history.csv, predictions.csv),
calibrated and thresholded on the whole val split like any other model. Expert runs are kept
in their own folders (`experts_dir`) and reused when a finished one has the same settings,
so an interrupted run loses nothing.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from detector import data, store, training, zoo

ROUTER_PER_SOURCE = 600  # training images per source for the router (it separates kinds of image, not fakes)


def _same_settings(card: dict, cfg: training.TrainConfig) -> bool:
    """Does a finished run's card record exactly the settings `cfg` would train with?"""
    wanted = {k: v for k, v in asdict(cfg).items() if k not in ("out", "verbose", "extra")}
    recorded = card.get("training", {})
    return all(json.loads(json.dumps(recorded.get(k))) == json.loads(json.dumps(v)) for k, v in wanted.items())


def train_or_reuse(cfg: training.TrainConfig) -> dict:
    """The card of `cfg.out`: reused when that folder holds a finished run with the same
    settings, else trained now."""
    folder = Path(cfg.out)
    if (folder / store.CARD).is_file() and (folder / store.MODEL_FILE).is_file():
        card = json.loads((folder / store.CARD).read_text())
        if _same_settings(card, cfg):
            print(f"expert {folder}: reusing the finished run", flush=True)
            return card
    return training.train(cfg)


def router_weights(features: np.ndarray, labels: np.ndarray, n_sources: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel d x K, bias K) of a Dense softmax layer equal to a standardised multinomial
    logistic regression of `labels` (0..K-1) on `features`."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(0), features.std(0) + 1e-6
    fitted = LogisticRegression(C=0.1, max_iter=2000).fit((features - mean) / scale, labels)
    coef, intercept = fitted.coef_, fitted.intercept_
    if n_sources == 2:  # sklearn keeps one row for two classes: logits (0, z)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    kernel = (coef / scale).T
    bias = intercept - (coef * (mean / scale)).sum(1)
    return kernel.astype("float32"), bias.astype("float32")


def branch_input_layer(model, branch_from: str) -> str:
    """Name of the layer whose output feeds `branch_from`: the trunk's last layer (Grad-CAM's)."""
    return model.get_layer(branch_from).input._keras_history[0].name


def assemble(experts: list, sources: list[str], calibrations: list[tuple[float, float]],
             branch_from: str, router: tuple[np.ndarray, np.ndarray], name: str = "source_experts"):
    """One Keras model: the first expert's layers below `branch_from` (the shared trunk), a
    router on their pooled output, and every expert's layers from `branch_from` on as a
    branch; `SourceMixture` combines the calibrated branches. Refuses experts whose trunks
    differ (they would each need their own)."""
    import keras

    from detector.layers import SourceMixture

    trunk_model = experts[0]
    split = trunk_model.get_layer(branch_from).input
    trunk_layers = trunk_model.layers[:[l.name for l in trunk_model.layers].index(branch_from)]
    for source, expert in zip(sources[1:], experts[1:]):
        for layer in trunk_layers:
            theirs = expert.get_layer(layer.name).get_weights()
            if any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), theirs)):
                raise ValueError(f"the {source} expert's layer {layer.name} differs from the trunk's: "
                                 f"experts must share every layer below {branch_from}")
    pooled = keras.layers.GlobalAveragePooling2D(name="router_gap")(split)
    gate = keras.layers.Dense(len(sources), activation="softmax", name="router")(pooled)
    branches = [keras.Model(e.get_layer(branch_from).input, e.output, name=f"expert_{s}")(split)
                for s, e in zip(sources, experts)]
    out = SourceMixture(sources=list(sources), temperatures=[float(t) for t, _ in calibrations],
                        biases=[float(b) for _, b in calibrations], name="mixture")([gate, *branches])
    model = keras.Model(trunk_model.input, out, name=name)
    model.get_layer("router").set_weights(list(router))
    return model


def train_experts(cfg: training.TrainConfig, branch_from: str, experts_dir: str | Path,
                  sources: list[str] | None = None) -> dict:
    """Train (or reuse) one expert per source, fit the router, assemble and write the run
    folder `cfg.out`. `sources` default: every source of the training split, largest first."""
    import keras

    t0 = time.time()
    spec = zoo.get_spec(cfg.model)
    if not (spec.backbone and cfg.cache_features):
        raise ValueError("source experts share a frozen trunk: they need a backbone model and the feature cache")
    if cfg.train_sources or cfg.kfold:
        raise ValueError("source experts use every source and no k-fold: drop --train-sources / --kfold")
    cfg.img_size = cfg.img_size or spec.input_size
    out, experts_dir = Path(cfg.out), Path(experts_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.data).expanduser().resolve()
    frames = data.ensure_splits(data.scan(root), seed=cfg.seed)
    counts = frames["train"]["source"].value_counts() if "source" in frames["train"] else pd.Series(dtype=int)
    sources = list(sources or counts.index)
    if len(sources) < 2 or not set(sources) <= set(counts.index):
        raise ValueError(f"source experts need two or more sources in the training split; it has {list(counts.index)}")

    expert_cfgs = [replace(cfg, out=str(experts_dir / sources[0]), train_sources=[sources[0]], extra={})]
    expert_cfgs += [replace(cfg, out=str(experts_dir / s), train_sources=[s], init_from=expert_cfgs[0].out,
                            fine_tune_from=branch_from, extra={}) for s in sources[1:]]
    cards = [train_or_reuse(c) for c in expert_cfgs]
    keras.backend.clear_session()

    from detector import layers  # noqa: F401  (custom layers)

    experts = [keras.saving.load_model(Path(c.out) / store.MODEL_FILE, compile=False, safe_mode=True)
               for c in expert_cfgs]
    pixels = {s: data.load_pixels(f["path"].tolist(), cfg.img_size) for s, f in frames.items() if len(f)}

    t_router = time.time()
    trunk = keras.Model(experts[0].input, experts[0].get_layer(branch_from).input)
    pooled_trunk = keras.Sequential([trunk, keras.layers.GlobalAveragePooling2D()])

    def pooled(x):
        return training.predict_outputs(pooled_trunk, x)
    rng = np.random.default_rng(cfg.seed)
    picks = np.concatenate([rng.permutation(np.flatnonzero(frames["train"]["source"].to_numpy() == s))
                            [:ROUTER_PER_SOURCE] for s in sources])
    label_of = {s: i for i, s in enumerate(sources)}
    router = router_weights(pooled(pixels["train"][picks]),
                            frames["train"]["source"].map(label_of).to_numpy()[picks], len(sources))
    val_known = frames["val"]["source"].isin(sources).to_numpy()
    val_feats = pooled(pixels["val"][val_known])
    router_val_accuracy = float(np.mean(np.argmax(val_feats @ router[0] + router[1], 1)
                                        == frames["val"]["source"].map(label_of).to_numpy()[val_known]))
    print(f"router: {len(picks)} training images, val accuracy {router_val_accuracy:.4f}", flush=True)

    model = assemble(experts, sources, [(c["temperature"], c["bias"]) for c in cards], branch_from, router)
    history = pd.concat([pd.read_csv(Path(c.out) / store.HISTORY).assign(expert=s)
                         for s, c in zip(sources, expert_cfgs) if (Path(c.out) / store.HISTORY).is_file()],
                        ignore_index=True)
    if not history.empty:
        history["phase"] = history["expert"] + ":" + history["phase"].astype(str)
        history["run_epoch"] = np.arange(1, len(history) + 1)
        history.to_csv(out / store.HISTORY, index=False)
    summary = {
        "experts": {s: {"folder": c.out, "total_seconds": card["training"].get("total_seconds"),
                        "kept_value": card["training"].get("kept_value"),
                        "val_auc": card["metrics"]["val"].get("auc"),
                        "temperature": card["temperature"], "bias": card["bias"]}
                    for s, c, card in zip(sources, expert_cfgs, cards)},
        "branch_from": branch_from,
        "router_val_accuracy": router_val_accuracy,
        "router_seconds": round(time.time() - t_router, 1),
        # what the whole recipe costs from scratch, reused experts included
        "recipe_seconds": round(sum(card["training"].get("total_seconds") or 0 for card in cards)
                                + time.time() - t_router, 1),
    }
    training_info = {**{k: v for k, v in asdict(cfg).items() if k not in ("out", "verbose", "extra")},
                     "phases": history["phase"].drop_duplicates().tolist() if not history.empty else [],
                     "epochs_run": int(len(history)), **summary}
    description = (f"{spec.name} source experts: a shared trunk, a router and one branch per source "
                   f"({', '.join(sources)}) fine-tuned from {branch_from} on that source alone.")
    return training.write_run(model, cfg, f"{spec.name}_experts", description,
                              branch_input_layer(experts[0], branch_from), training_info, root, frames,
                              pixels, t0)
