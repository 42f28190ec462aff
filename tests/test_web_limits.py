"""Bounded work in the web app (#27): what one request may make the server do.

* The app decodes images up to `images.WEB_MAX_PIXELS`, lower than the CLI's `MAX_PIXELS`:
  a transparent 64 MP PNG of a few hundred KB made the server hold gigabytes. A larger image
  is refused with the limit in its message, on the Detect page and in a Compare set.
* A heavy job started from a page (Compare's labelled set, an audit, a learning curve) reads
  at most `jobs.WEB_MAX_FILES` images, and waits for another heavy job to finish, saying so.
"""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO_ROOT, zip_bytes
from detector import comparison, images, jobs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _png(width: int, height: int) -> bytes:
    """A flat RGBA PNG: a few KB on the wire, `width * height` pixels once decoded."""
    buf = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 30, 30, 128)).save(buf, "PNG")
    return buf.getvalue()


# just over the web limit; the decoder refuses it from the header, before any pixel is allocated
BIG_W, BIG_H = 5000, (images.WEB_MAX_PIXELS // 5000) + 1


def _small_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((24, 24, 3), 120, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_web_limit_is_below_the_cli_limit():
    assert images.WEB_MAX_PIXELS < images.MAX_PIXELS
    assert 5472 * 3648 <= images.WEB_MAX_PIXELS  # a 20 MP camera photo still fits


def test_app_scoring_refuses_an_image_over_the_web_limit():
    from app import ui

    with pytest.raises(images.ImageDecodeError, match=r"exceeds the 20-megapixel limit"):
        ui.score("big.png", _png(BIG_W, BIG_H), [], gradcam=False)


def test_detect_page_lists_an_image_over_the_web_limit_with_the_reason(models_root, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))
    monkeypatch.chdir(REPO_ROOT)
    at = AppTest.from_file(str(REPO_ROOT / "streamlit_app.py"), default_timeout=180)
    at.run()
    at.file_uploader(key="det_upload").set_value([("big.png", _png(BIG_W, BIG_H), "image/png")]).run()
    assert not at.exception, at.exception
    shown = [e.value.replace("\\", "") for e in at.error]  # markdown escapes removed
    assert any("big.png" in e and f"image too large: {BIG_W}x{BIG_H}" in e and "exceeds the 20-megapixel limit" in e
               for e in shown), shown


def test_compare_set_refuses_big_images_and_reads_at_most_max_files():
    small = _small_jpeg()
    blob = zip_bytes({"real/a.jpg": small, "real/b.jpg": small, "fake/big.png": _png(BIG_W, BIG_H),
                 "fake/c.jpg": small, "fake/d.jpg": small})
    items = comparison.read_labelled_zip(blob, max_files=4, max_pixels=images.WEB_MAX_PIXELS)
    assert len(items) == 4 and items.left_out == 1 and items.ignored == []
    (bad,) = items.bad
    assert bad.name == "fake/big.png" and "exceeds the 20-megapixel limit" in bad.image


def test_audit_and_learning_curve_refuse_more_than_max_files(tiny_dataset):
    from detector import audit, learning_curve

    with pytest.raises(ValueError, match="audits at most 10"):
        audit.audit(tiny_dataset, max_files=10, progress=False)
    with pytest.raises(ValueError, match="at most 10"):
        learning_curve.run(str(tiny_dataset), "alpha", max_files=10)


def test_compare_scoring_waits_for_another_heavy_job_and_says_so(monkeypatch):
    from app import ui

    def fake_scores(items, paths, progress=None):
        frame = pd.DataFrame({"model": [], "p_fake": []})
        frame.attrs.update(seconds=0.0, ms_per_image={})
        return frame

    monkeypatch.setattr(comparison, "score_labelled", fake_scores)
    messages, results, errors = [], [], []

    def compare():
        try:
            results.append(ui._labelled_scores(f"test:{time.time()}", lambda p: comparison.LabelledSet(), [],
                                               progress=lambda fraction, text: messages.append(text)))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    with jobs.heavy_job("an audit"):
        worker = threading.Thread(target=compare)
        worker.start()
        deadline = time.time() + 10
        while not messages and time.time() < deadline:
            time.sleep(0.02)
        assert messages and messages[0].startswith("Waiting for another job to finish (an audit)")
        assert not results  # still queued
    worker.join(20)
    assert not errors, errors
    assert results and results[0]["cached"] is False and results[0]["left_out"] == 0


def test_zip_entries_hold_no_decompressed_member_and_read_one_at_a_time():
    """A zip of highly compressible images expands to gigabytes: the entries must hold only
    the zip, each member decompressed when asked and let go after."""
    import gc
    import tracemalloc

    from detector import inputs

    member_mb, n = 4, 6
    members = {f"set/{i}.bmp": bytes([i]) * (member_mb * 1024 ** 2) for i in range(n)}
    blob = zip_bytes(members)
    assert len(blob) < 1024 ** 2  # the upload is small
    tracemalloc.start()
    entries = inputs.expand_zip("set.zip", blob)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2 * member_mb * 1024 ** 2, f"expanding held {peak / 1024 ** 2:.0f} MB at its peak"
    held = [o for e in entries for o in gc.get_referents(e) if isinstance(o, bytes) and len(o) > len(blob)]
    assert held == []
    assert [e.name for e in entries] == [f"set.zip/{name}" for name in members]
    for e, data in zip(entries, members.values()):
        assert e.error == "" and e.data == data  # read back, byte for byte
