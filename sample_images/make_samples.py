"""Regenerate the demo images in this folder from scikit-image's bundled data.

Run from the repository root:  python sample_images/make_samples.py

Only public-domain / CC0 pictures that ship inside the scikit-image package
are used (see SOURCES.md); nothing is taken from ../shared/data.  Output is
deterministic, so re-running gives the same files.

Two of the files are fakes the project makes itself, so a demo can show a correct FAKE
beside a correct REAL: a face swap (the cameraman's face, recoloured, blended over the
astronaut's) and a self-blend (the astronaut's face blended with an altered copy of itself,
`detector.selfblend`, the pseudo-fakes used in training). `LABELS.csv` says which file is
real and which is fake; the Detect page reads it to mark each sample's verdict right or wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skimage import data

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from detector import selfblend  # noqa: E402
from detector.faces import square_box  # noqa: E402
from detector.images import encode_jpeg, resize_to  # noqa: E402

QUALITY = 90
MAX_BYTES = 300_000


def group_canvas(width: int = 1024, height: int = 600, face_size: int = 400) -> np.ndarray:
    """Two downscaled astronauts side by side on a neutral grey gradient: two faces."""
    ramp = np.linspace(200, 120, height, dtype=np.float64)[:, None]
    canvas = np.repeat(np.repeat(ramp, width, axis=1)[:, :, None], 3, axis=2).round().astype(np.uint8)
    astro = resize_to(data.astronaut(), face_size)
    top = (height - face_size) // 2
    gap = (width - 2 * face_size) // 3
    for left in (gap, 2 * gap + face_size):
        canvas[top:top + face_size, left:left + face_size] = astro
    return canvas


# Face squares (x, y, side) as MTCNN finds them in the skimage pictures (`detector.faces`),
# fixed here so the output does not depend on the face detector's version.
ASTRONAUT_FACE = (154, 48, 139)
CAMERA_FACE = square_box((174, 104, 105, 105), (512, 512))[:3]
SELF_BLEND_SEED = 5


def soft_ellipse(side: int, rx: float = 0.30, ry: float = 0.38, soften: float = 0.03) -> np.ndarray:
    """(side, side, 1) float mask in [0, 1]: an ellipse over the inner face, its edge blurred."""
    from PIL import Image, ImageFilter

    yy, xx = np.mgrid[0:side, 0:side]
    hard = ((((yy - side / 2) / (ry * side)) ** 2 + ((xx - side / 2) / (rx * side)) ** 2) <= 1).astype(np.uint8)
    soft = Image.fromarray(hard * 255).filter(ImageFilter.GaussianBlur(soften * side))
    return (np.asarray(soft, np.float32) / 255.0)[..., None]


def face_swap() -> np.ndarray:
    """The cameraman's face (grey, CC0) recoloured to the astronaut's face colours (per-channel
    mean and spread) and blended over her face through a soft ellipse: a classic face swap,
    with the blending seam and identity change such fakes carry."""
    astro = data.astronaut()
    x, y, s = ASTRONAUT_FACE
    cx, cy, cs = CAMERA_FACE
    grey = data.camera()[cy:cy + cs, cx:cx + cs]
    src = resize_to(np.repeat(grey[:, :, None], 3, axis=2), (s, s)).astype(np.float32)
    dst = astro[y:y + s, x:x + s].astype(np.float32)
    src = (src - src.mean((0, 1))) / (src.std((0, 1)) + 1e-6) * dst.std((0, 1)) + dst.mean((0, 1))
    mask = soft_ellipse(s)
    out = astro.copy()
    out[y:y + s, x:x + s] = np.clip(np.rint(mask * src + (1 - mask) * dst), 0, 255).astype(np.uint8)
    return out


def self_blended() -> np.ndarray:
    """The astronaut's face square blended with an altered copy of itself (`selfblend.self_blend`,
    a fixed seed), pasted back into the photo."""
    astro = data.astronaut()
    x, y, s = ASTRONAUT_FACE
    out = astro.copy()
    out[y:y + s, x:x + s] = selfblend.self_blend(astro[y:y + s, x:x + s].copy(),
                                                 np.random.default_rng(SELF_BLEND_SEED))
    return out


def main() -> None:
    samples = {
        "astronaut.jpg": data.astronaut(),
        "astronaut_group.jpg": group_canvas(),
        "no_face_coffee.jpg": data.coffee(),
        "chelsea_cat.jpg": data.chelsea(),
        "fake_face_swap.jpg": face_swap(),
        "fake_self_blend.jpg": self_blended(),
    }
    for name, rgb in samples.items():
        payload = encode_jpeg(rgb, quality=QUALITY)
        if len(payload) > MAX_BYTES:
            raise SystemExit(f"{name} is {len(payload)} bytes, over the {MAX_BYTES} limit")
        (HERE / name).write_bytes(payload)
        print(f"{name}: {rgb.shape[1]}x{rgb.shape[0]}, {len(payload) / 1000:.0f} KB")


if __name__ == "__main__":
    main()
