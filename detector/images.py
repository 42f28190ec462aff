"""The one image decoder and the one resize used by training, evaluation, CLI and app.

Why a single module: a detector only works on pixels that look like the ones
it was trained on.  If training read files one way and the app another, EXIF
rotation, alpha handling, 16-bit scaling or the resize filter would silently
differ between the two and the scores would drift.  Everything that turns a
file into model pixels therefore goes through ``decode_image`` and
``resize_to``.

Every failure to decode surfaces as ``ImageDecodeError`` (a ``ValueError``)
with a message a person can act on, so callers need one ``except`` clause.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A half-downloaded file must be refused, not decoded with a grey bottom half.
# Pillow's default is already False; we state it so nobody flips it by habit.
ImageFile.LOAD_TRUNCATED_IMAGES = False

MAX_PIXELS = 64_000_000
"""Largest image accepted (width * height).  A 40 MP camera photo fits; a
decompression bomb (tiny file claiming huge dimensions) is refused before any
pixel memory is allocated."""

WEB_MAX_PIXELS = 20_000_000
"""Largest image the web app decodes (it passes this as ``max_pixels``; the CLI keeps
``MAX_PIXELS``).  One server serves many people at once, and decoding a transparent PNG
briefly holds several full-size copies (RGBA, the white backdrop, the composite, the RGB
array): this keeps one decode's peak under about 500 MB (measured in docs/security.md).
A 20 MP camera photo (5472x3648) fits; a larger image is refused with the limit in the
message."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# Only these Pillow plugins may parse input: fewer parsers exposed to
# untrusted uploads (e.g. no EPS, which would shell out to Ghostscript).
# (Multi-picture "MPO" camera JPEGs come through the JPEG plugin.)
_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "DIB", "GIF", "TIFF")

_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


class ImageDecodeError(ValueError):
    """The input could not be turned into RGB pixels; the message says why."""


# --------------------------------------------------------------------------- #
# Reading the source
# --------------------------------------------------------------------------- #
def _open_source(source: Any) -> tuple[io.IOBase, bool]:
    """Return (binary stream positioned at 0, whether we must close it)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            return open(path, "rb"), True
        except FileNotFoundError:
            raise ImageDecodeError(f"file not found: {path}") from None
        except IsADirectoryError:
            raise ImageDecodeError(f"not a file (it is a folder): {path}") from None
        except PermissionError:
            raise ImageDecodeError(f"cannot read file (permission denied): {path}") from None
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file {path}: {exc.strerror or exc}") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source), True
    # Streamlit's UploadedFile is a BytesIO: getvalue() ignores the read position.
    try:
        if hasattr(source, "getvalue"):
            data = source.getvalue()
        elif hasattr(source, "read"):
            data = source.read()
        else:
            raise ImageDecodeError(
                f"cannot read an image from a {type(source).__name__}; "
                "pass a file path, bytes or a binary file object"
            )
    except ImageDecodeError:
        raise
    except Exception as exc:  # a broken upload stream, closed file, ...
        raise ImageDecodeError(f"cannot read the uploaded data: {exc}") from None
    if isinstance(data, str):
        raise ImageDecodeError("file object is in text mode; open it in binary mode ('rb')")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"file object returned {type(data).__name__}, expected bytes")
    return io.BytesIO(data), True


def _signature_format(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for sig, fmt in _SIGNATURES:
        if head.startswith(sig):
            return fmt
    return None


def _describe_non_image(head: bytes) -> str:
    """Say what an unidentified file looks like, so the user knows what went wrong."""
    low = head.lstrip()[:512].lower()
    if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low or b"<head" in low:
        return "not an image file (looks like HTML text, e.g. a web page saved instead of the image)"
    if b"<svg" in low:
        return "not a supported image (looks like an SVG vector drawing; export it as PNG or JPEG)"
    if head.startswith(b"%PDF"):
        return "not an image file (looks like a PDF document)"
    if head.startswith(b"PK\x03\x04"):
        return "not an image file (looks like a ZIP archive)"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace")
        if brand in ("heic", "heix", "hevc", "mif1", "msf1", "avif", "avis"):
            return f"unsupported image format (HEIC/AVIF, brand {brand!r}); convert it to JPEG or PNG"
        return "not an image file (looks like a video/MP4-style container)"
    if b"\x00" not in head and head.decode("utf-8", "replace").count("\ufffd") <= 2:
        return "not an image file (looks like text)"
    return "not an image file (unrecognised format; supported: " + ", ".join(IMAGE_EXTENSIONS) + ")"


def _too_large_message(width: int | None, height: int | None, pixels: int | None, max_pixels: int | None) -> str:
    if width and height:
        what = f"{width}x{height} pixels"
        pixels = width * height
    elif pixels:
        what = f"{pixels / 1e6:.0f} megapixels"
    else:
        what = "the image"
    if max_pixels is not None and (pixels is None or pixels > max_pixels):
        return f"image too large: {what} exceeds the {max_pixels / 1e6:g}-megapixel limit"
    return f"image too large: {what} exceeds Pillow's decompression-bomb limit"


def _png_size(head: bytes) -> tuple[int | None, int | None]:
    """Width/height from a PNG IHDR, for a precise message when Pillow refuses to open it."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    return None, None


# --------------------------------------------------------------------------- #
# Mode conversion
# --------------------------------------------------------------------------- #
def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _stretch_to_uint8(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _composite_on_white(img: Image.Image) -> np.ndarray:
    """Transparent pixels become white (what a viewer shows), not black garbage."""
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.array(Image.alpha_composite(white, rgba).convert("RGB"))


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return np.array(img)
    if mode.startswith("I;16"):
        # 16-bit grayscale: keep the high byte so 65535 -> 255 (clipping would saturate).
        a = np.asarray(img).astype(np.uint16)
        return _gray_to_rgb((a >> 8).astype(np.uint8))
    if mode == "I":
        a = np.asarray(img)
        if a.size and a.min() >= 0 and a.max() <= 0xFFFF:  # a 16-bit image widened to int32
            return _gray_to_rgb((a >> 8).astype(np.uint8))
        return _gray_to_rgb(_stretch_to_uint8(a))
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            return _gray_to_rgb(np.round(a * 255.0).astype(np.uint8))
        if a.size and a.min() >= 0.0 and a.max() <= 255.0:
            return _gray_to_rgb(np.round(a).astype(np.uint8))
        return _gray_to_rgb(_stretch_to_uint8(a))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P"):
        # P goes via RGBA so a palette transparency index is honoured.
        return _composite_on_white(img)
    # 1, L, CMYK, YCbCr, LAB, HSV, RGBX, ...
    return np.array(img.convert("RGB"))


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def decode_image(source: Any, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode a file path, bytes or binary file object into RGB pixels.

    Returns an HxWx3 ``uint8`` C-contiguous, writable array.  EXIF orientation
    is applied (phones store portraits sideways), transparency is composited
    on white, 16-bit/float data is scaled (not clipped) to 8 bits, and only the
    first frame of animated or multi-page files is used.  ``max_pixels=None``
    disables the size limit (Pillow's own ~179 MP bomb limit still applies).

    Raises ``ImageDecodeError`` for every failure (missing, empty, truncated,
    not an image, too large, ...).
    """
    fp, must_close = _open_source(source)
    try:
        try:
            head = fp.read(512)
            fp.seek(0)
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from None
        if not head:
            raise ImageDecodeError("file is empty (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode_stream(fp, head, max_pixels)
    except ImageDecodeError:
        raise
    except MemoryError:
        raise ImageDecodeError("not enough memory to decode this image") from None
    except Exception as exc:  # last resort: nothing but ImageDecodeError leaves
        raise ImageDecodeError(f"image is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    finally:
        if must_close:
            fp.close()


def _decode_stream(fp: io.IOBase, head: bytes, max_pixels: int | None) -> np.ndarray:
    try:
        img = Image.open(fp, formats=_PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        w, h = _png_size(head)
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageDecodeError(_too_large_message(w, h, int(m.group(1)) if m else None, max_pixels)) from None
    except UnidentifiedImageError:
        fmt = _signature_format(head)
        if fmt is not None:
            raise ImageDecodeError(f"image is truncated or corrupt (unreadable {fmt} header)") from None
        raise ImageDecodeError(_describe_non_image(head)) from None
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"image is truncated or corrupt ({exc})") from None

    with img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise ImageDecodeError(f"image has no pixels ({width}x{height})")
        # Check the header's claim BEFORE load() allocates width*height pixels.
        if max_pixels is not None and width * height > max_pixels:
            raise ImageDecodeError(_too_large_message(width, height, None, max_pixels))
        try:
            img.seek(0)  # first frame of animated GIF/WebP, first page of a TIFF
            img.load()
        except MemoryError:
            raise
        except Exception as exc:  # OSError "image file is truncated", SyntaxError, ValueError, ...
            raise ImageDecodeError(f"image is truncated or corrupt ({exc})") from None
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:
            # A broken EXIF block should not reject otherwise good pixels.
            oriented = img
        try:
            rgb = _to_rgb_array(oriented)
        except MemoryError:
            raise
        except Exception as exc:
            raise ImageDecodeError(f"cannot convert {img.mode!r} image to RGB ({exc})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageDecodeError(f"unexpected pixel layout {rgb.shape} {rgb.dtype} after conversion")
    return np.ascontiguousarray(rgb)


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """The array contract every stage after decoding relies on: HxWx3 uint8, non-empty."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {got}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"image has no pixels: shape {rgb.shape}")
    return rgb


def resize_to(rgb: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize RGB pixels with PIL bilinear: THE one resize used everywhere.

    ``size`` is an int for a square ``(size, size)`` output, or a tuple
    ``(width, height)`` -- PIL order, NOT numpy's (height, width).  Returns an
    HxWx3 uint8 array; when the input already has that size it is returned
    as is (no copy).
    """
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        width = height = int(size)
    else:
        try:
            width, height = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or a (width, height) tuple, got {size!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    rgb = check_rgb(rgb)
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return np.ascontiguousarray(rgb)
    pil = Image.fromarray(np.ascontiguousarray(rgb))
    return np.array(pil.resize((width, height), Image.Resampling.BILINEAR))


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """RGB pixels to JPEG bytes (thumbnails, reports, tests)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(check_rgb(rgb))).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


# The IJG (libjpeg) standard luminance quantization table (JPEG Annex K), natural (row-major)
# order: the table every libjpeg-based encoder (Pillow, OpenCV, ImageMagick, ...) scales by quality.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)


def ijg_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg writes for `quality` (1..100), as 64 numbers."""
    q = min(max(int(quality), 1), 100)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return np.clip(np.floor((IJG_LUMINANCE * scale + 50.0) / 100.0), 1, 255)


_IJG_TABLES = np.stack([ijg_table(q) for q in range(1, 101)])  # row q-1 = quality q


def estimate_jpeg_quality(luminance_table) -> int:
    """The IJG quality (1..100) whose scaled standard table is closest (L1, entry by entry)
    to a file's luminance quantization table (64 values, natural order as Pillow returns
    them). Exact for libjpeg-family encoders; the nearest equivalent for custom tables.
    The one estimator: the data audit and the Detect page's container summary both use it."""
    t = np.asarray(list(luminance_table), dtype=np.float64).reshape(-1)
    if t.size != 64:
        raise ValueError(f"a quantization table has 64 entries, got {t.size}")
    err = np.abs(_IJG_TABLES - t).sum(axis=1)
    return int(np.argmin(err)) + 1


def jpeg_quality(quant_tables: dict | None) -> int | None:
    """`estimate_jpeg_quality` of a JPEG's luminance table (the lowest-numbered table in
    Pillow's `img.quantization`), or None when the file has no usable table."""
    if not quant_tables:
        return None
    try:
        return estimate_jpeg_quality(quant_tables[min(quant_tables)])
    except (ValueError, TypeError):
        return None


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    """RGB pixels as a JPEG `data:` URI: table cells and the offline HTML report embed it."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(rgb, quality)).decode("ascii")


def encode_png(rgb: np.ndarray) -> bytes:
    """RGB pixels to lossless PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(check_rgb(rgb))).save(buf, format="PNG")
    return buf.getvalue()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files under ``folder`` (recursive), by extension, case-insensitive, sorted.

    Sorted so that every run (training splits, evaluation reports) sees the
    same order.  Raises FileNotFoundError / NotADirectoryError for a bad folder
    rather than silently returning nothing.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
