"""Stability check: does a face's verdict survive small, harmless changes to the picture?

Each scored region is re-scored after three perturbations that any upload pipeline may apply:

* ``jpeg70``: the region re-saved as JPEG at quality 70;
* ``scale0.5``: the region scaled to half size and back up (bilinear);
* ``shift``: the square crop moved by `SHIFT` of its side right and down (clipped at the
  image border), i.e. a slightly different framing of the same face.

A verdict that lands on the other side of the threshold under any of them is UNSTABLE: the
score rests on detail that a re-save or a re-frame destroys, so it should not be relied on.
All perturbed crops of an image go through the model in one batch (3 x faces crops), which
is the whole cost; `python -m detector bench` measures it per image.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from detector import images

JPEG_QUALITY = 70
SCALE = 0.5
SHIFT = 0.06       # fraction of the crop side
PERTURBATIONS = ("jpeg70", "scale0.5", "shift")


def jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    with Image.open(io.BytesIO(images.encode_jpeg(rgb, quality))) as img:
        return np.asarray(img.convert("RGB"))


def down_up(rgb: np.ndarray, scale: float = SCALE) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = images.resize_to(rgb, (max(1, round(w * scale)), max(1, round(h * scale))))
    return images.resize_to(small, (w, h))


def shifted(rgb: np.ndarray, box: tuple[int, int, int, int], shift: float = SHIFT) -> np.ndarray:
    """The (x, y, w, h) box moved by `shift` of its side right and down, clipped to the image
    (moved left/up instead when it would leave it)."""
    H, W = rgb.shape[:2]
    x, y, w, h = (int(v) for v in box)
    d = max(1, round(shift * max(w, h)))
    x2 = x + d if x + d + w <= W else max(0, x - d)
    y2 = y + d if y + d + h <= H else max(0, y - d)
    return rgb[y2:y2 + h, x2:x2 + w]


def perturbed_crops(rgb: np.ndarray, regions: list) -> list[np.ndarray]:
    """For each region (faces.FaceRegion), its three perturbed crops, in PERTURBATIONS order."""
    out = []
    for r in regions:
        out += [jpeg(r.crop), down_up(r.crop), shifted(rgb, r.box)]
    return out


def rescore(rgb: np.ndarray, regions: list, detectors: list) -> list[dict[str, float]]:
    """Per region, {perturbation: P(fake)} (the mean over the detectors, like the face's
    own score). One batch of 3 x regions crops per detector."""
    crops = perturbed_crops(rgb, regions)
    if not crops:
        return []
    scores = np.mean([np.asarray(d.score_crops(crops).p_fake, np.float64) for d in detectors], axis=0)
    k = len(PERTURBATIONS)
    return [{p: round(float(s), 4) for p, s in zip(PERTURBATIONS, scores[i * k:(i + 1) * k])}
            for i in range(len(regions))]


def unstable(p_fake: float, perturbed: dict[str, float] | None, threshold: float) -> bool:
    """Whether any perturbed score is on the other side of the threshold from the face's score."""
    if not perturbed:
        return False
    fake = p_fake >= threshold
    return any((s >= threshold) != fake for s in perturbed.values())


def text(p_fake: float, perturbed: dict[str, float] | None, threshold: float) -> str:
    """"UNSTABLE: 0.62 -> jpeg70 0.41, scale0.5 0.58, shift 0.66" (or "stable: ...")."""
    if not perturbed:
        return ""
    head = "UNSTABLE" if unstable(p_fake, perturbed, threshold) else "stable"
    return f"{head}: {p_fake:.2f} -> " + ", ".join(f"{k} {v:.2f}" for k, v in perturbed.items())
