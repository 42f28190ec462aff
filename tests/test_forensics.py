"""detector.forensics on generated images (no data set, no TensorFlow)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detector import forensics


def _smooth(h: int = 128, w: int = 160) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], axis=-1).astype(np.uint8)


def _jpeg(rgb: np.ndarray, quality: int, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


def test_error_level_highlights_a_pasted_patch():
    saved = np.asarray(Image.open(io.BytesIO(_jpeg(_smooth(), 90))).convert("RGB")).copy()
    saved[32:64, 40:72] = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    ela = forensics.error_level(saved, quality=90)
    assert ela.shape == saved.shape and ela.dtype == np.uint8
    inside = ela[32:64, 40:72].mean()
    outside = ela[80:, 100:].mean()
    assert inside > 4 * outside
    assert ela.max() == 255  # auto contrast
    fixed = forensics.error_level(saved, gain=1.0)
    assert fixed.max() < 255


def test_error_level_rejects_bad_input():
    with pytest.raises(ValueError):
        forensics.error_level(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        forensics.error_level(_smooth(), quality=0)


def test_fft_spectrum_shows_periodic_pattern_off_centre():
    img = _smooth(128, 128).astype(np.int16)
    img[:, ::4] += 60  # vertical stripes every 4 px: energy at horizontal frequency 1/4
    spec = forensics.fft_spectrum(np.clip(img, 0, 255).astype(np.uint8), max_side=None)
    assert spec.shape == (128, 128) and spec.dtype == np.uint8
    centre_row = spec[64]
    assert centre_row[64 + 32] > 200 and centre_row[64 - 32] > 200  # the stripes' frequency peaks
    assert np.median(spec) < 200


def test_radial_profile_sees_added_high_frequencies():
    smooth = _smooth(128, 128)
    checker = (np.indices((128, 128)).sum(axis=0) % 2 * 40).astype(np.int16)[..., None]
    noisy = np.clip(smooth.astype(np.int16) + checker, 0, 255).astype(np.uint8)
    a, b = forensics.radial_profile(smooth, bins=32), forensics.radial_profile(noisy, bins=32)
    assert a.shape == (32,) and np.isfinite(a).all() and np.isfinite(b).all()
    assert b[-8:].mean() > a[-8:].mean() + 1
    assert np.isfinite(forensics.radial_profile(np.zeros((3, 5, 3), np.uint8), bins=16)).all()


@pytest.mark.parametrize("quality", [50, 75, 95])
def test_jpeg_quality_estimate(quality):
    summary = forensics.exif_summary(_jpeg(_smooth(), quality))
    assert summary["format"] == "JPEG"
    assert abs(summary["jpeg_quality_estimate"] - quality) <= 2
    # the same one estimator as the data audit: exact for a libjpeg-family encoder
    assert summary["jpeg_quality_estimate"] == quality


def test_exif_summary_reads_camera_fields_and_gps_presence():
    exif = Image.Exif()
    exif[0x010F] = "Acme"          # Make
    exif[0x0110] = "Shooter 3000"  # Model
    exif[0x0131] = "EditPro 2.0"   # Software
    exif[0x8825] = {1: "N"}        # GPSInfo IFD
    summary = forensics.exif_summary(_jpeg(_smooth(), 85, exif))
    assert summary["has_exif"] and summary["gps_present"]
    assert summary["exif"] == {"Make": "Acme", "Model": "Shooter 3000", "Software": "EditPro 2.0"}
    notes = " ".join(forensics.exif_notes(summary))
    assert "EditPro 2.0" in notes and "Acme Shooter 3000" in notes and "GPS" in notes


def test_exif_summary_without_exif_and_on_garbage():
    buf = io.BytesIO()
    Image.fromarray(_smooth()).save(buf, "PNG")
    png = forensics.exif_summary(buf.getvalue())
    assert png["format"] == "PNG" and not png["has_exif"] and png["exif"] == {}
    assert "not evidence" in forensics.exif_notes(png)[0]
    bad = forensics.exif_summary(b"definitely not an image")
    assert "error" in bad and forensics.exif_notes(bad) == [bad["error"]]
