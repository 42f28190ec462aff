"""Experiment (docs/generalization.md, 2026-12-06): what each expert of an experts model says on
the test sources and held-out sets, and what the router does with it.

Usage, from the repository root (needs ../shared/data and ../shared/heldout):

    python tools/expert_breakdown.py [MODEL]

Prints, per set and class, the router's mean weight on each expert and each expert's calibrated
score (the inputs of the `SourceMixture` layer), then AUC / fakes caught / reals called fake /
fakes caught at 10% reals flagged for the routed score, each expert alone, and fixed mixes
(mean, max). Thresholds come from val; held-out and test images are only scored.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector import data, evaluation, inference, store  # noqa: E402
from detector import generalization as g  # noqa: E402

HELDOUT = ["../shared/heldout/stylegan3", "../shared/heldout/diffusion_sd21"]


def expert_scores(det, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(router weights (N, K), calibrated expert scores (N, K)) of an experts model."""
    import keras

    mixture = det.model.get_layer("mixture")
    inputs = keras.Model(det.model.inputs, mixture.input)
    parts = [inputs.predict(pixels[i:i + 64], verbose=0) for i in range(0, len(pixels), 64)]
    router = np.concatenate([p[0] for p in parts])
    raw = np.stack([np.concatenate([p[k] for p in parts])[:, 0] for k in range(1, len(parts[0]))], axis=1)
    logits = np.log(np.clip(raw, 1e-6, 1) / np.clip(1 - raw, 1e-6, 1))
    calibrated = 1 / (1 + np.exp(-(logits / np.array(mixture.temperatures) + np.array(mixture.biases))))
    return router, calibrated


def main(model: str | None) -> None:
    det = inference.load_detector(model)
    sources = det.model.get_layer("mixture").sources
    sets = g.load_sets(store.SHARED_DATA, HELDOUT)
    frames = {"val": sets.split[sets.split["split"] == "val"].reset_index(drop=True)}
    frames.update({c: sets.test_frame(c).reset_index(drop=True) for c in sets.columns})
    out = {k: expert_scores(det, data.load_pixels(f["path"].tolist(), det.size, progress=False))
           for k, f in frames.items()}
    for c in sets.columns:
        y = frames[c]["label"].to_numpy()
        for label, name in ((0, "real"), (1, "fake")):
            router, cal = (a[y == label] for a in out[c])
            print(f"{c:<16} {name}: router " + ", ".join(f"{s} {w:.2f}" for s, w in zip(sources, router.mean(0)))
                  + "; expert scores " + ", ".join(f"{s} {v:.2f}" for s, v in zip(sources, cal.mean(0))))
    combos = {"routed": lambda r, c: (r * c).sum(1), "mean": lambda r, c: c.mean(1), "max": lambda r, c: c.max(1)}
    combos.update({f"{s} alone": (lambda i: lambda r, c: c[:, i])(i) for i, s in enumerate(sources)})
    for name, fn in combos.items():
        threshold = evaluation.choose_threshold(frames["val"]["label"].to_numpy(), fn(*out["val"]))
        cells = []
        for c in sets.columns:
            m = g.cell_metrics(frames[c]["label"], fn(*out[c]), threshold)
            cells.append(f"{c} {m['auc']:.3f}/{m['recall']:.0%}/{m['real_called_fake']:.0%}/{m['caught_at_10pct_fpr']:.0%}")
        print(f"{name:<22} " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite0_experts")
