"""Classic image-forensics views, as pure functions (numpy + Pillow; no TensorFlow, no
Streamlit). They are aids for a person looking at an image, not detectors:

* error level analysis (ELA): re-save as JPEG and show how much each pixel changed.
  Regions pasted in from another image, or edited after the last save, often recompress
  differently from the rest. Flat, uniform ELA means nothing either way.
* FFT log spectrum: GAN and diffusion upsampling layers leave periodic traces that show
  up as bright dots or a grid in the centred log-magnitude spectrum; `radial_profile`
  condenses it to power per frequency (a high-frequency bump is a classic GAN sign).
* EXIF / container summary: camera, software, dates, JPEG quality estimate. Missing EXIF
  is NOT evidence of a fake: most websites and messengers strip it.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import ExifTags, Image

from detector.images import check_rgb, encode_jpeg, jpeg_quality

# Pillow plugins allowed to parse untrusted bytes here (same set as detector.images).
_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "DIB", "GIF", "TIFF")

_EXIF_FIELDS = ("Make", "Model", "Software", "DateTime", "DateTimeOriginal", "DateTimeDigitized",
                "LensModel", "Artist", "Copyright", "ImageDescription", "Orientation")


def error_level(rgb: np.ndarray, quality: int = 90, gain: float | None = None) -> np.ndarray:
    """ELA image: |image - JPEG(image, quality)| per channel, amplified for display.

    `gain=None` scales the largest difference to 255 (auto contrast); a fixed gain (e.g. 15)
    makes images comparable with each other. Returns HxWx3 uint8 of the input's size.
    Run it on the decoded original, never on a resized copy (resizing hides the JPEG grid).
    """
    rgb = check_rgb(rgb)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be 1..100, got {quality}")
    resaved = np.asarray(Image.open(io.BytesIO(encode_jpeg(rgb, int(quality)))).convert("RGB"))
    diff = np.abs(rgb.astype(np.int16) - resaved.astype(np.int16)).astype(np.float32)
    if gain is None:
        peak = float(diff.max())
        gain = 255.0 / peak if peak > 0 else 1.0
    return np.clip(diff * float(gain), 0, 255).astype(np.uint8)


def _gray(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    rgb = check_rgb(rgb)
    img = Image.fromarray(np.ascontiguousarray(rgb)).convert("L")
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float64)


def _log_magnitude(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    g = _gray(rgb, max_side)
    g = g - g.mean()
    window = np.outer(np.hanning(g.shape[0]) if g.shape[0] > 1 else np.ones(1),
                      np.hanning(g.shape[1]) if g.shape[1] > 1 else np.ones(1))
    spectrum = np.fft.fftshift(np.fft.fft2(g * window))
    return np.log1p(np.abs(spectrum))


def fft_spectrum(rgb: np.ndarray, max_side: int | None = 512) -> np.ndarray:
    """Centred log-magnitude spectrum of the grey image as HxW uint8 (0 = low, 255 = high).

    The zero frequency is in the middle; a Hann window suppresses the cross that the image
    borders would otherwise draw. Images larger than `max_side` are downscaled first (this
    removes the highest frequencies: pass None to keep them at the cost of speed).
    """
    mag = _log_magnitude(rgb, max_side)
    lo, hi = np.percentile(mag, 1), float(mag.max())
    if hi <= lo:
        return np.zeros(mag.shape, np.uint8)
    return (np.clip((mag - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def radial_profile(rgb: np.ndarray, bins: int = 64, max_side: int | None = 512) -> np.ndarray:
    """Mean log power per radial frequency band, from DC (index 0) to the Nyquist corner.

    Returns `bins` floats; a bump or a flat tail at the high end (last third) is what
    upsampling artefacts of generators look like in this view.
    """
    if bins < 1:
        raise ValueError("bins must be >= 1")
    mag = _log_magnitude(rgb, max_side)
    h, w = mag.shape
    yy, xx = np.indices((h, w))
    r = np.hypot((yy - h // 2) / max(h / 2, 1), (xx - w // 2) / max(w / 2, 1)) / np.sqrt(2)
    idx = np.clip((r * bins).astype(int), 0, bins - 1)
    sums = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=bins)
    counts = np.bincount(idx.ravel(), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        prof = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    # empty bands (tiny images) take their neighbour's value so the curve stays drawable
    if np.isnan(prof).any() and not np.isnan(prof).all():
        good = np.flatnonzero(~np.isnan(prof))
        prof = np.interp(np.arange(bins), good, prof[good])
    return prof


def _clean(value: Any) -> Any:
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace").strip("\x00 ").strip()
        return text if text.isprintable() else f"<{len(value)} bytes>"
    if isinstance(value, str):
        return value.strip("\x00 ").strip()
    if isinstance(value, (int, float)):
        return value
    return str(value)


def exif_summary(data: bytes) -> dict[str, Any]:
    """What the file's container says about itself: format, size, EXIF camera/software
    fields, whether GPS data is present (never the coordinates), ICC profile, and for
    JPEGs the estimated quality. Never raises: unreadable files give {"error": ...}.
    """
    out: dict[str, Any] = {"bytes": len(data)}
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as img:
            out.update(format=img.format, mode=img.mode, width=img.width, height=img.height,
                       frames=int(getattr(img, "n_frames", 1) or 1),
                       icc_profile="icc_profile" in img.info)
            if img.format == "JPEG":
                out["jpeg_quality_estimate"] = jpeg_quality(getattr(img, "quantization", None))
                out["progressive"] = bool(img.info.get("progressive") or img.info.get("progression"))
            try:
                exif = img.getexif()
            except Exception:  # a broken EXIF block: say so, keep the rest
                exif, out["exif_error"] = None, "EXIF block is unreadable"
            fields: dict[str, Any] = {}
            gps = False
            if exif:
                merged = dict(exif)
                try:
                    merged.update(exif.get_ifd(ExifTags.IFD.Exif))
                except Exception:
                    pass
                try:
                    gps = bool(exif.get_ifd(ExifTags.IFD.GPSInfo))
                except Exception:
                    gps = ExifTags.Base.GPSInfo in exif
                names = {ExifTags.TAGS.get(k, str(k)): v for k, v in merged.items()}
                fields = {k: _clean(names[k]) for k in _EXIF_FIELDS if k in names and names[k] not in ("", None)}
            out["has_exif"] = bool(exif)
            out["gps_present"] = gps
            out["exif"] = fields
    except Exception as exc:
        out["error"] = f"cannot read the file's metadata ({type(exc).__name__}: {exc})"
    return out


def exif_notes(summary: dict[str, Any]) -> list[str]:
    """Plain-language remarks on an `exif_summary` (hints for a person, not verdicts)."""
    notes = []
    if summary.get("error"):
        return [summary["error"]]
    if not summary.get("has_exif"):
        notes.append("No EXIF metadata. Common for screenshots, web downloads and generated images; "
                     "not evidence either way.")
    exif = summary.get("exif") or {}
    if "Software" in exif:
        notes.append(f"Last written by software: {exif['Software']}.")
    if "Make" in exif or "Model" in exif:
        notes.append(f"Camera: {' '.join(str(exif[k]) for k in ('Make', 'Model') if k in exif)}.")
    q = summary.get("jpeg_quality_estimate")
    if q is not None:
        notes.append(f"JPEG quality about {q}" + (" (heavily compressed: fine detail, and the "
                                                  "model's evidence, may be lost)." if q < 70 else "."))
    if summary.get("gps_present"):
        notes.append("The file carries GPS location data.")
    return notes
