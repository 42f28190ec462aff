"""Find the face region(s) the deepfake model should look at, with PyPI ``mtcnn``.

The model is trained on face crops (FaceForensics++-style: MTCNN box, square,
``MARGIN`` = 1.3 times the larger side).  For an arbitrary photo we cut the
same kind of square around every face.

DECISION -- already-cropped faces.  The training data are 256x256 face crops
and training/evaluation read them whole.  If MTCNN were run on such an image
and re-cropped, an uploaded dataset image would reach the model with
different pixels than it was trained/evaluated on.  So: if the largest face's
margin square is at least ``FACE_CROP_FRACTION`` of the image's short side,
the image already IS a face crop and the whole image is used as one region
(kind ``"face_crop"``).  Only smaller faces in larger photos are cut out
(kind ``"face"``).  With no face at all the whole image is used (kind
``"no_face"``) so the caller can still score it, but should say so.

Importing this module is cheap: TensorFlow/mtcnn load on the first
``get_detector()`` call.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from detector.images import check_rgb, resize_to

DETECT_MAX_SIDE = 512
"""Detection runs on a copy whose longest side is at most this (speed); boxes are scaled back.
With MTCNN's 20 px minimum face, a 1024 px photo still finds faces from about 40 px up --
smaller ones hold too few pixels for a 256 px model to judge anyway."""

MIN_CONFIDENCE = 0.90
MARGIN = 1.3
FACE_CROP_FRACTION = 0.6
KINDS = ("face", "face_crop", "no_face")

_MIN_DETECT_SIDE = 12  # MTCNN's smallest pyramid level; nothing smaller can hold a face

# MTCNN's Keras models are shared; one detection at a time (Streamlit runs sessions in threads).
_DETECT_LOCK = threading.Lock()


@dataclass(frozen=True)
class FaceRegion:
    """One region of an image to score.

    ``box``: (x, y, w, h) of the square crop region in image pixels (the whole
    image for kinds "face_crop"/"no_face").  ``face_box``: MTCNN's raw
    (x, y, w, h), None if no face.  ``crop``: the region's RGB uint8 pixels,
    not resized.
    """

    box: tuple[int, int, int, int]
    face_box: tuple[int, int, int, int] | None
    confidence: float | None
    kind: str
    crop: np.ndarray = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def whole_image(self) -> bool:
        """True when the region is the entire input image (no cut-out)."""
        return self.kind != "face"


@functools.lru_cache(maxsize=1)
def get_detector():
    """The shared MTCNN detector, built once (about 3 s).  Treat it as read-only.

    Weights are loaded from the installed package by absolute path: mtcnn
    1.0 otherwise looks for ``pnet.lz4`` etc. in the current directory first
    (and unpickles whatever it finds there).
    """
    from importlib.resources import files

    from mtcnn import MTCNN
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    weights = files("mtcnn.assets.weights")
    stages = [
        StagePNet(weights=str(weights / "pnet.lz4")),
        StageRNet(weights=str(weights / "rnet.lz4")),
        StageONet(weights=str(weights / "onet.lz4")),
    ]
    for stage in stages:
        _compile_stage(stage)
    return MTCNN(stages=stages, device="CPU:0")


def _compile_stage(stage) -> None:
    """Run a stage's Keras network as a tf.function instead of eagerly: about 3x faster
    (mtcnn 1.0 calls ``stage._model(x)`` once per pyramid scale, and eager per-layer dispatch
    dominated).  ``reduce_retracing`` generalises to unknown image sizes after the first
    few shapes; no AutoGraph, so tracing never writes a converted file to the temp folder."""
    import tensorflow as tf

    model = getattr(stage, "_model", None)
    if model is not None and not isinstance(model, tf.types.experimental.PolymorphicFunction):
        stage._model = tf.function(model, reduce_retracing=True, autograph=False)


def detect_faces(rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
    """Raw MTCNN detections as ``[((x, y, w, h), confidence), ...]`` in original pixels.

    No confidence filter, no ordering guarantee; ``find_faces`` is the API
    most callers want.
    """
    check_rgb(rgb)
    height, width = rgb.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    if scale < 1.0:
        small = resize_to(rgb, (max(1, round(width * scale)), max(1, round(height * scale))))
    else:
        small = rgb
    sh, sw = small.shape[:2]
    if min(sh, sw) < _MIN_DETECT_SIDE:
        return []
    # mtcnn 1.0 has no verbose flag; it calls its Keras models directly, so no progress bars.
    with _DETECT_LOCK:
        raw = get_detector().detect_faces(small)
    fx, fy = width / sw, height / sh
    found = []
    for det in raw:
        bx, by, bw, bh = (float(v) for v in det["box"])
        x0 = int(np.clip(round(bx * fx), 0, width - 1))
        y0 = int(np.clip(round(by * fy), 0, height - 1))
        x1 = int(np.clip(round((bx + bw) * fx), x0 + 1, width))
        y1 = int(np.clip(round((by + bh) * fy), y0 + 1, height))
        found.append(((x0, y0, x1 - x0, y1 - y0), float(det["confidence"])))
    return found


def _round_half_up(v: float) -> int:
    return int(math.floor(v + 0.5))  # not round(): banker's rounding would shift boxes by parity


def square_box(
    box: tuple[float, float, float, float],
    image_shape: tuple[int, ...],
    margin: float = MARGIN,
) -> tuple[int, int, int, int]:
    """Square crop region ``(x, y, side, side)`` around a face box ``(x, y, w, h)``.

    Side is ``max(w, h) * margin``, centred on the box, shrunk to the image's
    short side if larger, then shifted (never padded) to lie inside the image,
    so the crop has only real pixels.  ``image_shape`` is numpy's (H, W[, C]).
    """
    img_h, img_w = int(image_shape[0]), int(image_shape[1])
    if img_h <= 0 or img_w <= 0:
        raise ValueError(f"image has no pixels: shape {tuple(image_shape)}")
    x, y, w, h = (float(v) for v in box)
    side = _round_half_up(max(w, h) * margin)
    side = max(1, min(side, img_h, img_w))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = _round_half_up(cx - side / 2.0)
    y0 = _round_half_up(cy - side / 2.0)
    x0 = min(max(x0, 0), img_w - side)
    y0 = min(max(y0, 0), img_h - side)
    return (x0, y0, side, side)


def whole_image_region(rgb: np.ndarray, kind: str = "face_crop") -> FaceRegion:
    """The entire image as one region (dataset images are already face crops)."""
    check_rgb(rgb)
    if kind == "face":
        raise ValueError('a whole-image region has kind "face_crop" or "no_face", not "face"')
    height, width = rgb.shape[:2]
    return FaceRegion(box=(0, 0, width, height), face_box=None, confidence=None, kind=kind, crop=rgb)


def find_faces(rgb: np.ndarray) -> list[FaceRegion]:
    """Regions to score: one per face (confidence >= MIN_CONFIDENCE), left to right.

    Returns a single whole-image region when the image already is a face crop
    (kind "face_crop", see module docstring) or when no face is found (kind
    "no_face").  Never returns an empty list.
    """
    check_rgb(rgb)
    detections = [(b, c) for b, c in detect_faces(rgb) if c >= MIN_CONFIDENCE]
    if not detections:
        return [whole_image_region(rgb, kind="no_face")]

    height, width = rgb.shape[:2]
    largest_box, largest_conf = max(detections, key=lambda d: d[0][2] * d[0][3])
    if square_box(largest_box, rgb.shape)[2] >= FACE_CROP_FRACTION * min(height, width):
        return [FaceRegion(box=(0, 0, width, height), face_box=largest_box,
                           confidence=largest_conf, kind="face_crop", crop=rgb)]

    regions = []
    for face_box, conf in sorted(detections, key=lambda d: (d[0][0], d[0][1])):
        x, y, s, _ = square_box(face_box, rgb.shape)
        crop = rgb[y:y + s, x:x + s].copy()  # own C-contiguous pixels, not a view
        regions.append(FaceRegion(box=(x, y, s, s), face_box=face_box, confidence=conf, kind="face", crop=crop))
    return regions
