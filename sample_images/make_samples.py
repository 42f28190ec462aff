"""Regenerate the demo images in this folder from scikit-image's bundled data.

Run from the repository root:  python sample_images/make_samples.py

Only public-domain / CC0 pictures that ship inside the scikit-image package
are used (see SOURCES.md); nothing is taken from ../shared/data.  Output is
deterministic, so re-running gives the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skimage import data

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

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


def main() -> None:
    samples = {
        "astronaut.jpg": data.astronaut(),
        "astronaut_group.jpg": group_canvas(),
        "no_face_coffee.jpg": data.coffee(),
        "chelsea_cat.jpg": data.chelsea(),
    }
    for name, rgb in samples.items():
        payload = encode_jpeg(rgb, quality=QUALITY)
        if len(payload) > MAX_BYTES:
            raise SystemExit(f"{name} is {len(payload)} bytes, over the {MAX_BYTES} limit")
        (HERE / name).write_bytes(payload)
        print(f"{name}: {rgb.shape[1]}x{rgb.shape[0]}, {len(payload) / 1000:.0f} KB")


if __name__ == "__main__":
    main()
