"""Experiment (docs/generalization.md): two checks that need no training, on the held-out sets.

Usage, from the repository root (needs ../shared/data and ../shared/heldout):

    python tools/test_time_checks.py rigid [N]     # needs requirements-foundation.txt; ~13 min
    python tools/test_time_checks.py flip [MODEL]  # ~7 min

`rigid`: the RIGID idea (He et al., 2024): a real photo's foundation embedding should move less
under small Gaussian noise than a generated image's. Score = 1 - cosine(DINOv2 token of x, token of
x + noise) for the CLS token and the mean patch cosine, noise std 0.02 / 0.05 / 0.1 in the
ImageNet-normalised input. Nothing is fitted, so it prints AUC and fakes caught at 10% reals
flagged only (N test images per class of each shared source; every held-out image).

`flip`: a shipped model scored on the mirrored face, and on the mean of plain and mirrored (the
usual test-time augmentation); thresholds chosen on val with the same transform. Prints AUC /
caught / reals called fake / caught at 10% reals flagged per column.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector import data, evaluation, foundation, inference, store  # noqa: E402
from detector import generalization as g  # noqa: E402

HELDOUT = ["../shared/heldout/stylegan3", "../shared/heldout/diffusion_sd21"]
NOISE = (0.02, 0.05, 0.1)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def rigid(n: int) -> None:
    sets = g.load_sets(store.SHARED_DATA, HELDOUT)
    session, rng = foundation._session(), np.random.default_rng(0)

    def tokens(x: np.ndarray) -> np.ndarray:
        return session.run([foundation.TOKENS_NODE], {"input_image": x.astype("float32")})[0]

    for column in sets.columns:
        frame = sets.test_frame(column)
        if column in sets.sources:  # a random n per class of the shared test split
            frame = pd.concat(grp.sample(min(n, len(grp)), random_state=0)
                              for _, grp in frame.groupby("label"))
        started, scores = time.time(), {}
        px = data.load_pixels(frame["path"].tolist(), foundation.INPUT_SIZE, progress=False)
        for i in range(0, len(px), 16):
            x = foundation.prepare(px[i:i + 16])
            clean = tokens(x)
            for std in NOISE:
                noisy = tokens(x + rng.normal(0, std, x.shape))
                scores.setdefault(f"cls {std}", []).append(1 - _cosine(clean[:, 0], noisy[:, 0]))
                scores.setdefault(f"patch {std}", []).append(
                    1 - _cosine(clean[:, 1:], noisy[:, 1:]).mean(axis=1))
        y = frame["label"].to_numpy()
        row = {k: (round(roc_auc_score(y, np.concatenate(v)), 3),
                   round(evaluation.recall_at_fpr(y, np.concatenate(v), 0.10), 2))
               for k, v in scores.items()}
        print(column, len(y), f"{time.time() - started:.0f}s", row, flush=True)


def flip(model: str) -> None:
    sets = g.load_sets(store.SHARED_DATA, HELDOUT)
    val = sets.split[sets.split["split"] == "val"].reset_index(drop=True)
    columns = {c: sets.test_frame(c).reset_index(drop=True) for c in sets.columns}
    det = inference.load_detector(model)
    px = {"val": data.load_pixels(val["path"].tolist(), det.size, progress=False)}
    px |= {c: data.load_pixels(f["path"].tolist(), det.size, progress=False) for c, f in columns.items()}

    def score(x: np.ndarray) -> np.ndarray:
        return np.concatenate([det.score_batch(x[i:i + 64]) for i in range(0, len(x), 64)])

    plain = {k: score(v) for k, v in px.items()}
    mirrored = {k: score(np.ascontiguousarray(v[:, :, ::-1])) for k, v in px.items()}
    variants = {"plain": plain, "mirrored": mirrored,
                "mean of both": {k: (plain[k] + mirrored[k]) / 2 for k in plain}}
    for name, s in variants.items():
        threshold = evaluation.choose_threshold(val["label"].to_numpy(), s["val"])
        row = {}
        for c, f in columns.items():
            m = g.cell_metrics(f["label"], s[c], threshold)
            row[c] = (round(m["auc"], 3), round(m["recall"], 2), round(m["real_called_fake"], 2),
                      round(evaluation.recall_at_fpr(f["label"].to_numpy(), s[c], 0.10), 2))
        print(f"{name:<13} thr={threshold:.3f}", row, flush=True)


if __name__ == "__main__":
    what, arg = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    if what == "rigid":
        rigid(int(arg or 150))
    elif what == "flip":
        flip(arg or "efficientnet_lite0_experts")
    else:
        sys.exit(__doc__)
