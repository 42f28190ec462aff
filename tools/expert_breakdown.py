"""Experiment (docs/generalization.md, 2026-12-06): what each expert of an experts model says on
the test sources and held-out sets, and what the router does with it.

Usage, from the repository root (needs ../shared/data and ../shared/heldout):

    python tools/expert_breakdown.py [MODEL]

Prints, per set and class, the router's mean weight on each expert and each expert's calibrated
score (the inputs of the `SourceMixture` layer), then AUC / fakes caught / reals called fake /
fakes caught at 10% reals flagged for the routed score, each expert alone, fixed mixes (mean,
max) and, for an expert with position probes, the routed score with that expert's own branch
logit in place of its branch+probes blend (Platt-calibrated on that source's val images).
Thresholds and calibrations come from val; held-out and test images are only scored.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector import data, evaluation, inference, store  # noqa: E402
from detector import generalization as g  # noqa: E402

HELDOUT = ["../shared/heldout/stylegan3", "../shared/heldout/diffusion_sd21"]


def expert_scores(det, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(router weights (N, K), calibrated expert scores (N, K), {source: its branch's own logit
    (N,)} for each expert with position probes) of an experts model."""
    import keras

    mixture = det.model.get_layer("mixture")
    probed = [s for s in mixture.sources if any(layer.name == f"probes_{s}_logits" for layer in det.model.layers)]
    outputs = [*mixture.input, *(det.model.get_layer(f"probes_{s}_logits").output for s in probed)]
    net = keras.Model(det.model.inputs, outputs)
    parts = [net.predict(pixels[i:i + 64], verbose=0) for i in range(0, len(pixels), 64)]
    joined = [np.concatenate([p[k] for p in parts]) for k in range(len(outputs))]
    k = len(mixture.sources)
    # each expert calibrated as `SourceMixture` does it
    calibrated = np.stack([evaluation.apply_temperature(joined[1 + i][:, 0], t, b)
                           for i, (t, b) in enumerate(zip(mixture.temperatures, mixture.biases))], axis=1)
    branch = {s: joined[k + 1 + i][:, 0] for i, s in enumerate(probed)}  # the first logit the blend combines
    return joined[0], calibrated, branch


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
            router, cal = (a[y == label] for a in out[c][:2])
            print(f"{c:<16} {name}: router " + ", ".join(f"{s} {w:.2f}" for s, w in zip(sources, router.mean(0)))
                  + "; expert scores " + ", ".join(f"{s} {v:.2f}" for s, v in zip(sources, cal.mean(0))))
    combos = {"routed": lambda r, c, b: (r * c).sum(1), "mean": lambda r, c, b: c.mean(1),
              "max": lambda r, c, b: c.max(1)}
    combos.update({f"{s} alone": (lambda i: lambda r, c, b: c[:, i])(i) for i, s in enumerate(sources)})
    val = frames["val"]
    for s in out["val"][2]:
        i, mine = sources.index(s), (val["source"] == s).to_numpy()
        platt = LogisticRegression(C=1e6).fit(out["val"][2][s][mine, None], val["label"].to_numpy()[mine])

        def without_probes(r, c, b, i=i, s=s, platt=platt):
            c = c.copy()
            c[:, i] = platt.predict_proba(b[s][:, None])[:, 1]
            return (r * c).sum(1)
        combos[f"routed, {s} without probes"] = without_probes
    for name, fn in combos.items():
        threshold = evaluation.choose_threshold(val["label"].to_numpy(), fn(*out["val"]))
        cells = []
        for c in sets.columns:
            m = g.cell_metrics(frames[c]["label"], fn(*out[c]), threshold)
            cells.append(f"{c} {m['auc']:.3f}/{m['recall']:.0%}/{m['real_called_fake']:.0%}/{m['caught_at_10pct_fpr']:.0%}")
        print(f"{name:<22} " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite0_experts")
