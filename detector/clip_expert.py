"""A CLIP expert blended into one expert of a source-experts model (model layer, no training).

Why (docs/generalization.md, 2026-12-06 sixth session): the experts model's StyleGAN expert is a
network fine-tuned on the FFHQ-vs-StyleGAN collection; it learned that collection as much as its
fakes, so it missed many held-out StyleGAN3 faces. A linear probe on frozen CLIP ViT-B/16
features, fitted on the same training images only, transfers better to them; its logit is
blended with the expert's (`weight`). The router, the face-swap expert and the network's novelty
check and Grad-CAM are unchanged: only that expert's calibrated score in the mixture changes.

The folder's `clip_expert.npz` (written by `detector.experts.add_clip_expert`) holds the probe:
the StandardScaler's mean and scale, the logistic regression's weights and intercept, the Platt
fit (temperature, bias) of its P(fake) on that source's val images, so the score it gives the
mixture is calibrated like the experts' own (`layers.SourceMixture`), and the blend weight.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector import evaluation, foundation, runfolder


@dataclass(frozen=True)
class ClipExpert:
    source: str            # the expert it is blended into (one of the mixture's sources)
    mean: np.ndarray       # (2048,) StandardScaler
    scale: np.ndarray
    coef: np.ndarray       # (2048,) logistic regression
    intercept: float
    temperature: float     # Platt fit on the source's val images
    bias: float
    weight: float = 1.0    # its share of the blended logit; the rest stays with the network expert

    def probability(self, features: np.ndarray) -> np.ndarray:
        """(N, 2048) CLIP features -> calibrated P(fake) (N,)."""
        z = ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept
        return evaluation.apply_temperature(evaluation.sigmoid(z), self.temperature, self.bias)

    def score(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) pixels 0..255 -> calibrated P(fake), through CLIP's own resize to 224."""
        return self.probability(foundation.clip_features(np.asarray(batch).round().clip(0, 255).astype(np.uint8)))


def load(folder: str | Path) -> ClipExpert | None:
    """The folder's CLIP expert, None when it has none. The encoder must be installed
    (`foundation.FoundationUnavailable` with the install command otherwise): a model that was
    calibrated with the expert must never be served without it."""
    path = Path(folder) / runfolder.CLIP_EXPERT
    if not path.is_file():
        return None
    foundation.clip_path()
    with np.load(path, allow_pickle=False) as z:
        return ClipExpert(str(z["source"]), z["mean"].astype(np.float64), z["scale"].astype(np.float64),
                          z["coef"].astype(np.float64), float(z["intercept"]), float(z["temperature"]),
                          float(z["bias"]), float(z["weight"]))


def save(folder: str | Path, expert: ClipExpert) -> Path:
    path = Path(folder) / runfolder.CLIP_EXPERT
    np.savez(path, source=np.array(expert.source), mean=expert.mean, scale=expert.scale, coef=expert.coef,
             intercept=np.array(expert.intercept), temperature=np.array(expert.temperature),
             bias=np.array(expert.bias), weight=np.array(expert.weight))
    return path


def remix(route: np.ndarray, expert_p: list[np.ndarray], temperatures, biases, index: int,
          replacement: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """`layers.SourceMixture` in numpy, with expert `index`'s calibrated score blended with
    `replacement` (the CLIP expert's calibrated P(fake)) in logit space, `weight` to the
    replacement (1: replaced outright): sum over experts of router weight x
    sigmoid(logit(p_k) / T_k + b_k)."""
    calibrated = [evaluation.apply_temperature(np.asarray(p, np.float64).reshape(-1), t, b)
                  for p, t, b in zip(expert_p, temperatures, biases)]
    calibrated[index] = evaluation.sigmoid(weight * evaluation.logit(np.asarray(replacement, np.float64).reshape(-1))
                                           + (1 - weight) * evaluation.logit(calibrated[index]))
    return (np.asarray(route, np.float64) * np.stack(calibrated, axis=1)).sum(axis=1)
