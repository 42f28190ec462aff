"""Pixel degradations the web applies to images: JPEG re-compression, down-scaling and back,
Gaussian blur. Core layer (numpy + Pillow): the robustness pipeline sweeps them, and the
novelty reference uses a blur to check itself, without either importing the other.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from detector import images

PERTURBATIONS: dict[str, tuple] = {
    "jpeg_quality": ("none", 95, 80, 60, 45, 30, 15),
    "downscale": (1.0, 0.75, 0.5, 0.25, 0.125),
    "gaussian_blur": (0, 0.5, 1, 2, 4, 8),
}


def is_identity(kind: str, level) -> bool:
    if kind == "jpeg_quality":
        return level in (None, "none")
    if kind == "downscale":
        return float(level) == 1.0
    if kind == "gaussian_blur":
        return float(level) == 0.0
    raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")


def perturb(rgb: np.ndarray, kind: str, level) -> np.ndarray:
    """One decoded RGB image degraded by `kind` at `level` (same size as the input)."""
    if is_identity(kind, level):
        return rgb
    if kind == "jpeg_quality":
        return images.decode_image(images.encode_jpeg(rgb, int(level)))
    height, width = rgb.shape[:2]
    if kind == "downscale":
        small = images.resize_to(rgb, (max(1, round(width * float(level))), max(1, round(height * float(level)))))
        return images.resize_to(small, (width, height))
    blurred = Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius=float(level)))  # radius = sigma
    return np.asarray(blurred)
