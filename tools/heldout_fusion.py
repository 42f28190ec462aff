"""Experiment (docs/generalization.md): a DINOv2 linear probe and its fusion with shipped networks.

Usage, from the repository root (needs requirements-foundation.txt, ../shared/data, ../shared/heldout):

    python tools/heldout_fusion.py [CAP] [MODEL ...]

The probe is fitted on CAP training images per source and class (`generalization.fit_probe`: C and
threshold on val); the fusion adds the network's logit and the probe's, each divided by its spread
on val, with network weight a in {0, .25, .5, .75, 1}; every threshold is chosen on val. Prints AUC /
fakes caught / reals called fake per test source and held-out set, and the worst held-out AUC (the
selection rule). Held-out and test images are only scored.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector import data, evaluation, inference, store  # noqa: E402
from detector import generalization as g  # noqa: E402

HELDOUT = ["../shared/heldout/stylegan3", "../shared/heldout/diffusion_sd21"]


def shared_key(path) -> str:
    return str(path).split("shared/data/")[-1]


def network_scores(model: str, sets: g.Sets, val, columns: dict) -> dict:
    """P(fake) of a shipped model: val and test from its stored predictions, held-out scored now."""
    preds = store.read_predictions(model)
    stored = preds.assign(k=preds["path"].map(shared_key)).set_index("k")["p_fake"]
    out = {"val": stored.reindex(val["path"].map(shared_key)).to_numpy()}
    for c in sets.sources:
        out[c] = stored.reindex(columns[c]["path"].map(shared_key)).to_numpy()
    det = inference.load_detector(model)
    for c in sets.heldout:
        px = data.load_pixels(columns[c]["path"].tolist(), det.size, progress=False)
        out[c] = np.concatenate([det.score_batch(px[i:i + 64]) for i in range(0, len(px), 64)])
    return out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def main(cap: int, models: list[str]) -> None:
    features = g.dinov2_features()
    sets = g.load_sets(store.SHARED_DATA, HELDOUT)
    train = g.training_subset(sets.split, sets.sources, cap)
    val = sets.split[sets.split["split"] == "val"].reset_index(drop=True)
    probe, info = g.fit_probe(features(train["path"].tolist()), train["label"].to_numpy(),
                              features(val["path"].tolist()), val["label"].to_numpy())
    print("probe", info)
    columns = {c: sets.test_frame(c).reset_index(drop=True) for c in sets.columns}
    z_val = probe.decision_function(features(val["path"].tolist()))
    z_cols = {c: probe.decision_function(features(f["path"].tolist())) for c, f in columns.items()}

    def report(name: str, zv: np.ndarray, zc: dict) -> None:
        thr = evaluation.choose_threshold(val["label"].to_numpy(), evaluation.sigmoid(zv))
        row = {}
        for c in sets.columns:
            m = g.cell_metrics(columns[c]["label"], evaluation.sigmoid(zc[c]), thr)
            row[c] = (round(m["auc"], 3), round(m["recall"], 2), round(m["real_called_fake"], 2))
        worst = min(v[0] for k, v in row.items() if k in sets.heldout)
        print(f"{name:<34} worst-heldout {worst:.3f} ", row, flush=True)

    report("dinov2 probe", z_val, z_cols)
    for model in models:
        s = network_scores(model, sets, val, columns)
        n_val, n_cols = logit(s["val"]), {c: logit(s[c]) for c in sets.columns}
        sd_n, sd_p = n_val.std(), z_val.std()
        for a in (0.0, 0.25, 0.5, 0.75, 1.0):
            report(f"{model} a={a}", a * n_val / sd_n + (1 - a) * z_val / sd_p,
                   {c: a * n_cols[c] / sd_n + (1 - a) * z_cols[c] / sd_p for c in sets.columns})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else g.MAX_TRAIN_PER_CLASS,
         sys.argv[2:] or ["efficientnet_lite0_experts", "efficientnet_lite0"])
