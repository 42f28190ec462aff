"""Tests for detector.images: every input is generated here (no dataset files, no network)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from detector import images
from detector.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    ImageDecodeError,
    decode_image,
    encode_jpeg,
    encode_png,
    list_images,
    resize_to,
)


# --------------------------------------------------------------------------- helpers
def gradient(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=2).astype(np.uint8)


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid 1x1 PNG whose IHDR is patched to claim width x height (CRC fixed)."""
    data = bytearray(save(Image.new("L", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def assert_rgb(a: np.ndarray, shape: tuple[int, int]) -> None:
    assert a.dtype == np.uint8
    assert a.shape == (*shape, 3)
    assert a.flags["C_CONTIGUOUS"]
    assert a.flags["WRITEABLE"]


# --------------------------------------------------------------------------- good files
def test_truncated_images_flag_stays_off():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_max_pixels_allows_40mp_photo():
    assert MAX_PIXELS == 64_000_000
    assert 7728 * 5152 <= MAX_PIXELS  # a 40 MP camera frame


@pytest.mark.parametrize("fmt,kw,exact", [
    ("PNG", {}, True),
    ("BMP", {}, True),
    ("TIFF", {}, True),
    ("WEBP", {"lossless": True}, True),
    ("WEBP", {"quality": 90}, False),
    ("JPEG", {"quality": 95}, False),
])
def test_decode_formats(fmt, kw, exact):
    rgb = gradient()
    out = decode_image(save(Image.fromarray(rgb), fmt, **kw))
    assert_rgb(out, (48, 64))
    if exact:
        np.testing.assert_array_equal(out, rgb)
    else:
        assert np.abs(out.astype(int) - rgb).mean() < 6


def test_one_by_one_pixel():
    out = decode_image(save(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"))
    assert_rgb(out, (1, 1))
    assert out[0, 0].tolist() == [10, 200, 30]


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = decode_image(data)
    assert_rgb(out, (16, 16))
    assert out[8, 8].tolist() == [255, 0, 0]


def test_animated_webp_uses_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((0, 0, 255), (255, 0, 0))]
    out = decode_image(save(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    assert out[8, 8].tolist() == [0, 0, 255]


def test_mpo_camera_jpeg_uses_first_picture():
    pics = [Image.new("RGB", (16, 8), (255, 0, 0)), Image.new("RGB", (16, 8), (0, 0, 255))]
    data = save(pics[0], "MPO", save_all=True, append_images=pics[1:], quality=95)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    out = decode_image(data)
    assert_rgb(out, (8, 16))
    assert out[4, 8, 0] > 230 and out[4, 8, 2] < 30


def test_multipage_tiff_uses_first_page():
    pages = [Image.new("RGB", (20, 10), (0, 255, 0)), Image.new("RGB", (30, 30), (255, 0, 0))]
    data = save(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = decode_image(data)
    assert_rgb(out, (10, 20))
    assert out[5, 5].tolist() == [0, 255, 0]


def test_rgba_is_composited_on_white():
    a = np.zeros((4, 3, 4), np.uint8)
    a[0, :] = (255, 0, 0, 255)  # opaque red
    a[1, :] = (255, 0, 0, 0)    # fully transparent -> white
    a[2, :] = (0, 0, 0, 128)    # half-transparent black -> mid grey
    out = decode_image(save(Image.fromarray(a, "RGBA"), "PNG"))
    assert_rgb(out, (4, 3))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[1, 0].tolist() == [255, 255, 255]
    assert 120 <= out[2, 0, 0] <= 135 and len(set(out[2, 0].tolist())) == 1


def test_la_is_composited_on_white():
    img = Image.new("LA", (2, 1))
    img.putpixel((0, 0), (50, 255))
    img.putpixel((1, 0), (50, 0))
    out = decode_image(save(img, "PNG"))
    assert out[0, 0].tolist() == [50, 50, 50]
    assert out[0, 1].tolist() == [255, 255, 255]


def test_palette_with_transparency():
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 255] + [255, 0, 0] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    data = save(img, "PNG", transparency=1)  # palette index 1 (red) is transparent
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = decode_image(data)
    assert out[0, 0].tolist() == [0, 0, 255]
    assert out[0, 1].tolist() == [255, 255, 255]


def test_cmyk_jpeg():
    data = save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert_rgb(out, (16, 16))
    r, g, b = out[8, 8].tolist()
    assert r > 230 and g < 30 and b < 30


def test_16bit_png_is_scaled_not_clipped():
    a = np.array([[0, 255, 256 * 100, 65535]], dtype=np.uint16)
    data = save(Image.fromarray(a), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data)
    assert_rgb(out, (1, 4))
    assert out[0, :, 0].tolist() == [0, 0, 100, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_32bit_int_and_float_tiff():
    ints = np.array([[0, 256 * 7, 65535]], dtype=np.int32)
    out = decode_image(save(Image.fromarray(ints), "TIFF"))
    assert out[0, :, 0].tolist() == [0, 7, 255]
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    out = decode_image(save(Image.fromarray(floats), "TIFF"))
    assert out[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_becomes_rgb(mode):
    img = Image.new(mode, (5, 3), 255)
    img.putpixel((0, 0), 0)
    out = decode_image(save(img, "PNG"))
    assert_rgb(out, (3, 5))
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[2, 4].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # left half red
    a[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = save(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data)
    assert out.shape == (40, 20, 3)  # transposed
    # rotating 90 degrees clockwise moves the left (red) half to the top
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60


class FakeUploadedFile(io.BytesIO):
    """Like Streamlit's UploadedFile: a BytesIO, possibly already read to the end."""

    name = "upload.png"


class ReadOnlyStream:
    def __init__(self, data: bytes):
        self._data = data

    def read(self) -> bytes:
        return self._data


def test_bytes_path_and_file_like_give_identical_arrays(tmp_path):
    data = save(Image.fromarray(gradient()), "JPEG", quality=90)
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    upload = FakeUploadedFile(data)
    upload.read()  # position at the end, as after a first read
    with open(path, "rb") as fh:
        from_handle = decode_image(fh)
    results = [
        decode_image(str(path)),
        decode_image(path),
        decode_image(data),
        decode_image(bytearray(data)),
        decode_image(memoryview(data)),
        decode_image(upload),
        decode_image(ReadOnlyStream(data)),
        from_handle,
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


# --------------------------------------------------------------------------- bad files
def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty \(0 bytes\)"):
        decode_image(p)
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_truncated_jpeg():
    data = save(Image.fromarray(gradient(200, 300)), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_truncated_png():
    rng = np.random.default_rng(0)
    data = save(Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_random_bytes():
    data = b"\x13\x37" + np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageDecodeError, match="not an image file"):
        decode_image(data)


def test_html_named_png(tmp_path):
    p = tmp_path / "photo.png"
    p.write_text("<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head></html>\n")
    with pytest.raises(ImageDecodeError, match="not an image file.*HTML"):
        decode_image(p)


def test_plain_text():
    with pytest.raises(ImageDecodeError, match="looks like text"):
        decode_image(b"hello, this is not a picture\n")


def test_huge_dimensions_refused_by_pillow_bomb_check():
    data = png_claiming(30000, 30000)
    assert len(data) < 100
    with pytest.raises(ImageDecodeError, match=r"too large: 30000x30000 pixels exceeds the 64-megapixel limit"):
        decode_image(data)


def test_huge_dimensions_refused_before_load(monkeypatch):
    """9000x9000 is below Pillow's own bomb limits, so our size check must catch it before load()."""
    data = png_claiming(9000, 9000)

    def boom(self, *a, **k):
        raise AssertionError("load() must not run for an oversized image")

    monkeypatch.setattr(Image.Image, "load", boom)
    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)
    with pytest.raises(ImageDecodeError, match=r"too large: 9000x9000 pixels exceeds the 64-megapixel limit"):
        decode_image(data)


def test_bomb_warning_range_is_an_error():
    # 10000x9500 = 95 MP: Pillow only *warns* (above ~89 MP); we must refuse, quietly.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageDecodeError, match="too large"):
            decode_image(png_claiming(10000, 9500))


def test_max_pixels_parameter():
    data = save(Image.fromarray(gradient(100, 100)), "PNG")
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ImageDecodeError, match=r"100x100 pixels exceeds the 0.009999-megapixel limit"):
        decode_image(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=None).shape == (100, 100, 3)


def test_missing_path(tmp_path):
    with pytest.raises(ImageDecodeError, match="file not found: .*nope.jpg"):
        decode_image(tmp_path / "nope.jpg")


def test_folder_and_bad_types(tmp_path):
    with pytest.raises(ImageDecodeError, match="folder"):
        decode_image(tmp_path)
    with pytest.raises(ImageDecodeError, match="cannot read an image from a int"):
        decode_image(42)
    with pytest.raises(ImageDecodeError, match="binary mode"):
        decode_image(io.StringIO("abc"))


def test_decode_error_is_a_value_error():
    assert issubclass(ImageDecodeError, ValueError)


def test_unsupported_format_not_parsed():
    # A valid image in a format outside IMAGE_EXTENSIONS (PPM) is refused, not decoded.
    with pytest.raises(ImageDecodeError, match="not an image file"):
        decode_image(save(Image.new("RGB", (4, 4)), "PPM"))


# --------------------------------------------------------------------------- resize/encode/list
def test_resize_to_square_and_tuple():
    rgb = gradient(48, 64)
    sq = resize_to(rgb, 32)
    assert sq.shape == (32, 32, 3) and sq.dtype == np.uint8
    wh = resize_to(rgb, (100, 20))  # (width, height)
    assert wh.shape == (20, 100, 3) and wh.dtype == np.uint8
    assert resize_to(rgb, (64, 48)) is rgb  # already that size: no copy
    flat = np.full((10, 10, 3), 77, np.uint8)
    assert (resize_to(flat, 23) == 77).all()  # bilinear keeps a flat colour


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8)])
def test_resize_to_rejects_non_rgb(bad):
    with pytest.raises(ValueError):
        resize_to(bad, 8)


def test_resize_to_rejects_bad_size():
    with pytest.raises(ValueError):
        resize_to(gradient(), 0)
    with pytest.raises(ValueError):
        resize_to(gradient(), (10,))


def test_encode_roundtrip():
    rgb = gradient()
    np.testing.assert_array_equal(decode_image(encode_png(rgb)), rgb)
    jpg = encode_jpeg(rgb, quality=90)
    assert jpg[:3] == b"\xff\xd8\xff"
    assert np.abs(decode_image(jpg).astype(int) - rgb).mean() < 6


def test_list_images(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for rel in ["z.PNG", "b/x.jpg", "a/deep/y.JPEG", "a/notes.txt", "a/img.webp", "c.tiff", "d.gif", "e.bmp", "f.tif"]:
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()  # a directory with an image-like name is not an image
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == sorted(found)
    assert set(found) == {"z.PNG", "b/x.jpg", "a/deep/y.JPEG", "a/img.webp", "c.tiff", "d.gif", "e.bmp", "f.tif"}
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")


def test_module_exports():
    for name in ("decode_image", "resize_to", "encode_jpeg", "encode_png", "list_images", "ImageDecodeError"):
        assert hasattr(images, name)
