"""Experiment (docs/generalization.md): handcrafted low-level features in a linear probe.

Usage, from the repository root (needs ../shared/data and ../shared/heldout; ~3 min):

    python tools/lowlevel_probe.py            # every image resized to 256 px, as the models see it
    python tools/lowlevel_probe.py --native   # the central 256 px at the file's own resolution
    python tools/lowlevel_probe.py --native --fuse efficientnet_lite0_experts   # + fusion, ~4 min

Two classic generator-agnostic cues, on the 256 px pixels every model sees (`data.load_pixels`):
- the azimuthal average of the log Fourier spectrum of the grey image (Durall et al., 2020,
  "Unmasking DeepFakes with simple features"), relative to its DC term;
- the neighbouring-pixel residual x - nearest-upsample(x[::2, ::2]) (NPR, Tan et al., 2024,
  which traces the up-sampling every generator ends with): its spectrum, and four magnitude stats.

A standardised logistic regression per feature group, trained on the shared train split (both
sources), C chosen on val. `--fuse MODEL` adds the NPR-spectrum probe's logit to a shipped
network's (as tools/heldout_fusion.py does), thresholds on val. `--native` keeps the up-sampling traces a resize would blur: the
shared images are 256 px already (unchanged), the held-out SD 2.1 files are 512-768 px. Prints val AUC, then AUC / fakes caught at 10% reals flagged per column.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from heldout_fusion import HELDOUT, logit, network_scores  # noqa: E402

from detector import data, evaluation, images, store  # noqa: E402
from detector import generalization as g  # noqa: E402

SIZE, BINS = 256, 128
_RADIUS = np.hypot(*(np.indices((SIZE, SIZE)) - SIZE / 2)).astype(int).ravel()
_COUNTS = np.bincount(_RADIUS)[:BINS]


def _azimuthal_log_spectrum(gray: np.ndarray) -> np.ndarray:
    """(N, SIZE, SIZE) -> (N, BINS): mean log |FFT| on rings around the centre."""
    spec = np.log(np.abs(np.fft.fftshift(np.fft.fft2(gray), axes=(-2, -1))) + 1e-6)
    return np.stack([np.bincount(_RADIUS, s.ravel())[:BINS] / _COUNTS for s in spec])


def features(px: np.ndarray) -> np.ndarray:
    """(N, SIZE, SIZE, 3) uint8 -> (N, 2 * BINS + 4): spectrum, NPR spectrum, NPR stats."""
    out = []
    for i in range(0, len(px), 256):
        x = px[i:i + 256].astype(np.float32) / 255
        spectrum = _azimuthal_log_spectrum(x.mean(-1))
        npr = x - np.repeat(np.repeat(x[:, ::2, ::2], 2, 1), 2, 2)
        stats = np.stack([np.abs(npr).mean((1, 2, 3)), npr.std((1, 2, 3)),
                          np.abs(npr[:, 1::2]).mean((1, 2, 3)), np.abs(npr[:, :, 1::2]).mean((1, 2, 3))], 1)
        out.append(np.concatenate([spectrum - spectrum[:, :1],
                                   _azimuthal_log_spectrum(npr.mean(-1)), stats], 1))
    return np.concatenate(out)


def native_pixels(paths: list[str]) -> np.ndarray:
    """The central SIZE x SIZE pixels of each file at its own resolution (the one decoder)."""
    out = np.empty((len(paths), SIZE, SIZE, 3), np.uint8)
    for i, path in enumerate(paths):
        img = images.decode_image(path)
        if min(img.shape[:2]) < SIZE:
            raise ValueError(f"{path}: smaller than {SIZE} px")
        top, left = (img.shape[0] - SIZE) // 2, (img.shape[1] - SIZE) // 2
        out[i] = img[top:top + SIZE, left:left + SIZE]
    return out


GROUPS = {"spectrum": slice(0, BINS), "npr spectrum": slice(BINS, 2 * BINS),
          "npr stats": slice(2 * BINS, None), "all": slice(None)}


def _cell(y, p, threshold: float) -> tuple:
    m = g.cell_metrics(y, p, threshold)
    return tuple(round(m[k], 3) for k in ("auc", "recall", "real_called_fake", "caught_at_10pct_fpr"))


def main(native: bool, fuse: str | None) -> None:
    sets = g.load_sets(store.SHARED_DATA, HELDOUT)
    frames = {s: sets.split[sets.split["split"] == s].reset_index(drop=True) for s in ("train", "val")}
    frames |= {c: sets.test_frame(c).reset_index(drop=True) for c in sets.columns}

    def load(paths: list[str]) -> np.ndarray:
        return native_pixels(paths) if native else data.load_pixels(paths, SIZE, progress=False)

    feats = {k: features(load(f["path"].tolist())) for k, f in frames.items()}
    labels = {k: f["label"].to_numpy() for k, f in frames.items()}
    probes = {}
    for name, cols in GROUPS.items():
        fits = []
        for c in (0.01, 0.1, 1.0):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
            clf.fit(feats["train"][:, cols], labels["train"])
            fits.append((roc_auc_score(labels["val"], clf.decision_function(feats["val"][:, cols])), c, clf))
        val_auc, c, clf = max(fits, key=lambda f: f[0])
        probes[name] = {k: clf.decision_function(x[:, cols]) for k, x in feats.items() if k != "train"}
        row = {k: (round(roc_auc_score(labels[k], z), 3), round(evaluation.recall_at_fpr(labels[k], z, 0.10), 2))
               for k, z in probes[name].items() if k != "val"}
        print(f"{name:<13} C={c} val AUC {val_auc:.3f}", row, flush=True)
    if fuse:  # network logit + probe logit, each divided by its spread on val; thresholds on val
        net = network_scores(fuse, sets, frames["val"], {c: frames[c] for c in sets.columns})
        net = {k: logit(v) for k, v in net.items()}
        z = probes["npr spectrum"]
        for a in (0.0, 0.5, 0.75, 0.9, 1.0):
            mix = {k: a * net[k] / net["val"].std() + (1 - a) * z[k] / z["val"].std() for k in z}
            thr = evaluation.choose_threshold(labels["val"], evaluation.sigmoid(mix["val"]))
            print(f"{fuse} a={a} (AUC / caught / reals called fake / caught at 10% flagged)",
                  {c: _cell(labels[c], evaluation.sigmoid(mix[c]), thr) for c in sets.columns}, flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main("--native" in args, args[args.index("--fuse") + 1] if "--fuse" in args else None)
