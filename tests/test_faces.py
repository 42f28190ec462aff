"""Tests for detector.faces on scikit-image's public-domain pictures (no dataset files, no network).

The MTCNN tests share one detector (built once, ~4 s) and take a few seconds in total.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from skimage import data

from detector import faces
from detector.faces import (
    FACE_CROP_FRACTION,
    MARGIN,
    MIN_CONFIDENCE,
    FaceRegion,
    find_faces,
    get_detector,
    square_box,
    whole_image_region,
)
from detector.images import resize_to


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # 512x512, one face (Eileen Collins) in the upper-left area


def paste(canvas_hw: tuple[int, int], parts: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    h, w = canvas_hw
    ramp = np.linspace(200, 110, w).round().astype(np.uint8)
    canvas = np.repeat(np.repeat(ramp[None, :, None], h, axis=0), 3, axis=2)
    for img, x, y in parts:
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
    return canvas


def inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    ix, iy, iw, ih = inner
    ox, oy, ow, oh = outer
    return ox <= ix and oy <= iy and ix + iw <= ox + ow and iy + ih <= oy + oh


# --------------------------------------------------------------------------- pure geometry (no MTCNN)
def test_constants():
    assert MIN_CONFIDENCE == 0.90 and MARGIN == 1.3 and FACE_CROP_FRACTION == 0.6
    assert faces.DETECT_MAX_SIDE == 512


def test_square_box_centred():
    assert square_box((40, 40, 20, 20), (100, 100, 3), margin=1.5) == (35, 35, 30, 30)
    # uses the larger side, then margin
    x, y, s, s2 = square_box((40, 30, 20, 40), (200, 200))
    assert s == s2 == 52 and (x, y) == (24, 24)


def test_square_box_shifted_inside_near_borders():
    assert square_box((0, 0, 20, 20), (100, 100), margin=2.0) == (0, 0, 40, 40)
    assert square_box((90, 85, 10, 15), (100, 100), margin=2.0) == (70, 70, 30, 30)
    x, y, s, _ = square_box((-5, 95, 20, 20), (100, 120), margin=1.3)
    assert x == 0 and y + s == 100 and s == 26


def test_square_box_larger_than_image_shrinks_to_short_side():
    assert square_box((10, 10, 180, 90), (100, 300), margin=1.3) == (50, 0, 100, 100)  # centred on x=100
    # wide image, tall face bigger than the height
    x, y, s, _ = square_box((200, 0, 50, 80), (60, 400, 3))
    assert s == 60 and y == 0 and 0 <= x <= 340


def test_square_box_degenerate():
    assert square_box((5, 5, 0, 0), (10, 10)) == (5, 5, 1, 1)
    with pytest.raises(ValueError):
        square_box((0, 0, 1, 1), (0, 10))


def test_face_region_repr_eq_and_kind():
    a = FaceRegion(box=(0, 0, 2, 2), face_box=None, confidence=None, kind="no_face", crop=np.zeros((2, 2, 3), np.uint8))
    b = dataclasses.replace(a, crop=np.ones((2, 2, 3), np.uint8))
    assert a == b  # pixels are not compared
    assert "crop" not in repr(a)
    assert a.whole_image
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.kind = "face"  # type: ignore[misc]
    with pytest.raises(ValueError):
        dataclasses.replace(a, kind="cat")


def test_whole_image_region():
    rgb = np.zeros((30, 50, 3), np.uint8)
    r = whole_image_region(rgb)
    assert r.kind == "face_crop" and r.box == (0, 0, 50, 30) and r.crop is rgb
    assert r.face_box is None and r.confidence is None and r.whole_image
    assert whole_image_region(rgb, kind="no_face").kind == "no_face"
    with pytest.raises(ValueError):
        whole_image_region(rgb, kind="face")


# --------------------------------------------------------------------------- MTCNN
def test_get_detector_is_cached():
    assert get_detector() is get_detector()


def test_astronaut_one_face_cut_out(astronaut):
    before = astronaut.copy()
    regions = find_faces(astronaut)
    np.testing.assert_array_equal(astronaut, before)  # input untouched
    assert len(regions) == 1
    r = regions[0]
    # The face is ~85x107 px in a 512 px image: its 1.3 square (~140 px) is far below
    # FACE_CROP_FRACTION * 512, so the rule says: a face cut from a larger photo.
    assert r.kind == "face" and not r.whole_image
    assert r.confidence >= MIN_CONFIDENCE
    fx, fy, fw, fh = r.face_box
    assert 150 <= fx <= 220 and 40 <= fy <= 100 and 60 <= fw <= 120 and 80 <= fh <= 140
    x, y, s, s2 = r.box
    assert s == s2 and s >= max(fw, fh) and inside(r.face_box, r.box)
    assert inside(r.box, (0, 0, 512, 512))
    assert r.crop.shape == (s, s, 3) and r.crop.dtype == np.uint8
    np.testing.assert_array_equal(r.crop, astronaut[y:y + s, x:x + s])
    assert not np.shares_memory(r.crop, astronaut)


def test_already_cropped_face_is_used_whole(astronaut):
    # Cut the astronaut's face the way the training crops were made, at 256x256.
    face_box = find_faces(astronaut)[0].face_box
    x, y, s, _ = square_box(face_box, astronaut.shape)
    crop256 = resize_to(astronaut[y:y + s, x:x + s], 256)
    regions = find_faces(crop256)
    assert len(regions) == 1
    r = regions[0]
    assert r.kind == "face_crop" and r.whole_image
    assert r.box == (0, 0, 256, 256)
    assert r.crop is crop256  # exactly the pixels the model was trained on
    assert r.face_box is not None and r.confidence >= MIN_CONFIDENCE


def test_mtcnn_stages_run_compiled():
    """The three MTCNN networks run as tf.functions (about 3x faster than eager calls)."""
    tf = pytest.importorskip("tensorflow")
    stages = faces.get_detector().stages
    assert len(stages) == 3
    assert all(isinstance(s._model, tf.types.experimental.PolymorphicFunction) for s in stages)


def test_small_face_in_large_canvas(astronaut):
    small = resize_to(astronaut, 300)
    canvas = paste((1000, 1600), [(small, 900, 500)])  # > DETECT_MAX_SIDE: detection runs downscaled
    regions = find_faces(canvas)
    assert len(regions) == 1
    r = regions[0]
    assert r.kind == "face"
    assert inside(r.box, (900, 500, 300, 300))
    assert inside(r.face_box, r.box)
    # same place as on the 300 px astronaut, mapped back to full-resolution coordinates
    fx, fy, _, _ = r.face_box
    assert 900 + 85 <= fx <= 900 + 135 and 500 + 20 <= fy <= 500 + 60


def test_two_faces_left_to_right(astronaut):
    small = resize_to(astronaut, 400)
    canvas = paste((600, 1024), [(small, 75, 100), (small, 550, 100)])
    regions = find_faces(canvas)
    assert [r.kind for r in regions] == ["face", "face"]
    assert regions[0].box[0] < regions[1].box[0]
    assert inside(regions[0].box, (75, 100, 400, 400))
    assert inside(regions[1].box, (550, 100, 400, 400))


@pytest.mark.parametrize("name", ["coffee", "gradient", "tiny"])
def test_no_face_gives_whole_image(name):
    if name == "coffee":
        rgb = data.coffee()
    elif name == "gradient":
        rgb = paste((240, 320), [])
    else:
        rgb = np.full((5, 7, 3), 128, np.uint8)  # too small for MTCNN at all
    regions = find_faces(rgb)
    assert len(regions) == 1
    r = regions[0]
    h, w = rgb.shape[:2]
    assert r.kind == "no_face" and r.whole_image
    assert r.box == (0, 0, w, h) and r.face_box is None and r.confidence is None
    assert r.crop is rgb


def test_concurrent_calls_agree(astronaut):
    results: list = [None, None]

    def work(i: int) -> None:
        results[i] = find_faces(astronaut)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results[0] is not None and results[0] == results[1]


def test_rejects_non_rgb():
    with pytest.raises(ValueError):
        find_faces(np.zeros((10, 10), np.uint8))
