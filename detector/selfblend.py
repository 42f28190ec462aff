"""Self-blended images (Shiohara and Yamasaki, CVPR 2022): pseudo-fakes made from real faces.

A real face crop is blended with a slightly altered copy of itself (colour shift, scale and
shift by a few pixels, blur or sharpening) through a soft mask over the face. The result has
the traces every face swap leaves -- a blending boundary, a colour and sharpness mismatch
between the inner face and its surroundings -- and nothing specific to one forgery method,
which is why detectors trained on them generalise to fakes they never saw.

Our crops are face-centred squares (MTCNN box x 1.3, see `faces`), so the mask is a random
ellipse around the centre instead of a landmark hull: no landmark model needed.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

SOURCE = "self_blend"
"""The `source` given to pseudo-fakes in training frames (they never enter val or test)."""


def ellipse_mask(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 in [0, 1]: a soft ellipse over the central face region, its blend
    strength and edge softness drawn at random."""
    h, w = size
    cy = h * (0.5 + rng.uniform(-0.06, 0.06))
    cx = w * (0.5 + rng.uniform(-0.06, 0.06))
    ry = h * rng.uniform(0.26, 0.42)
    rx = w * rng.uniform(0.22, 0.36)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    hard = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).astype(np.uint8) * 255
    sigma = max(1.0, min(h, w) * rng.uniform(0.01, 0.06))
    soft = np.asarray(Image.fromarray(hard).filter(ImageFilter.GaussianBlur(sigma)), np.float32) / 255.0
    strength = rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    return (soft * strength).astype(np.float32)


def altered_copy(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 'source face': the same image with a small colour, geometry and sharpness change."""
    h, w = rgb.shape[:2]
    x = rgb.astype(np.float32)
    x = x * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-12, 12, size=3)  # per-channel gain/shift
    x = (x - x.mean()) * rng.uniform(0.9, 1.1) + x.mean()  # contrast
    img = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    scale = rng.uniform(0.95, 1.05)
    dx, dy = rng.uniform(-0.03, 0.03, size=2) * (w, h)
    # inverse affine map (output -> input) about the centre: scale, then shift
    a = 1.0 / scale
    cx, cy = w / 2.0, h / 2.0
    img = img.transform((w, h), Image.Transform.AFFINE,
                        (a, 0, cx - a * cx - dx, 0, a, cy - a * cy - dy),
                        resample=Image.Resampling.BILINEAR)
    kind = rng.integers(3)
    if kind == 0:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    elif kind == 1:
        img = img.filter(ImageFilter.UnsharpMask(radius=2, percent=int(rng.integers(50, 150)), threshold=0))
    return np.asarray(img)


def self_blend(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One real face crop (H, W, 3) uint8 -> one pseudo-fake of the same size."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    mask = ellipse_mask(rgb.shape[:2], rng)[..., None]
    src = altered_copy(rgb, rng).astype(np.float32)
    out = mask * src + (1.0 - mask) * rgb.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def make_pseudo_fakes(pixels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Self-blend a random `fraction` of (N, H, W, 3) real images. Returns (indices of the
    real images used, their pseudo-fakes); seeded, so a run is reproducible. A fraction above
    1 uses every image `int(fraction)` times (plus a random part for the rest), each time with
    a new mask and alteration: more pseudo-fakes than there are reals, as SBI's on-the-fly
    generation gives over many epochs."""
    rng = np.random.default_rng(seed)
    n = int(round(len(pixels) * float(fraction)))
    whole, rest = divmod(n, len(pixels)) if len(pixels) else (0, 0)
    idx = np.sort(np.concatenate([np.repeat(np.arange(len(pixels)), whole),
                                  rng.choice(len(pixels), size=rest, replace=False)]).astype(int))
    out = np.empty((len(idx), *pixels.shape[1:]), np.uint8)
    for j, i in enumerate(idx):
        out[j] = self_blend(pixels[i], rng)
    return idx, out
