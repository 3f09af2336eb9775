"""Reading user images: every common format and mode becomes RGB uint8; every bad input gets ImageError."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, features

from core.imageio import MAX_BYTES, ImageError, encode_jpeg, encode_png, load_image


def saved(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def two_colour(size=(40, 20)) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:, : size[0] // 2] = (255, 0, 0)
    arr[:, size[0] // 2:] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF"])
def test_common_formats_decode_to_rgb_uint8(fmt, tmp_path):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("this Pillow has no WebP support")
    data = saved(two_colour(), fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    path = tmp_path / f"img.{fmt.lower()}"
    path.write_bytes(data)
    for source in (path, str(path), data):
        out = load_image(source)
        assert out.shape == (20, 40, 3) and out.dtype == np.uint8
        assert out.flags.writeable                     # callers draw on it
        left, right = out[:, :15].reshape(-1, 3).mean(0), out[:, 25:].reshape(-1, 3).mean(0)
        assert left[0] > 200 and left[2] < 60 and right[2] > 200 and right[0] < 60


def test_grayscale_becomes_three_equal_channels():
    arr = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (10, 1))
    out = load_image(saved(Image.fromarray(arr, "L"), "PNG"))
    assert out.shape == (10, 32, 3)
    for ch in range(3):
        np.testing.assert_array_equal(out[:, :, ch], arr)


def test_rgba_is_composited_on_white():
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[:2] = (255, 0, 0, 255)       # opaque red on top, fully transparent below
    out = load_image(saved(Image.fromarray(arr, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(out[3, 3], (255, 255, 255))


def test_16_bit_png_is_scaled_to_8_bits():
    arr = np.full((4, 4), 65535, np.uint16)
    arr[0, 0], arr[0, 1] = 32768, 0
    out = load_image(saved(Image.fromarray(arr), "PNG"))
    assert out.dtype == np.uint8
    assert tuple(out[0, :3, 0]) == (128, 0, 255)


def test_cmyk_jpeg_becomes_rgb():
    out = load_image(saved(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95))
    assert out.shape == (8, 8, 3)
    r, g, b = out[4, 4].astype(int)
    assert r > 220 and g < 40 and b < 40


def test_exif_orientation_is_applied():
    """A phone photo stored sideways with Orientation=6 (rotate 90 degrees clockwise to view)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = saved(two_colour((40, 20)), "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).size == (40, 20)
    out = load_image(data)
    assert out.shape == (40, 20, 3)                    # now portrait
    top, bottom = out[:15].reshape(-1, 3).mean(0), out[25:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60               # the left (red) half went to the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_encoders_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_image(encode_png(img)), img)
    back = load_image(encode_jpeg(np.full((16, 24, 3), 120, np.uint8)))
    assert back.shape == (16, 24, 3) and abs(int(back.mean()) - 120) <= 2


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with no pixel data: no memory spent."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def error_of(source, name: str | None = None) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source, name)
    return str(info.value)


def test_corrupt_bytes():
    msg = error_of(b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)),
                   "broken.jpg")
    assert msg.startswith("broken.jpg:") and ("corrupt" in msg or "not an image" in msg)


def test_truncated_jpeg(tmp_path):
    noise = np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    data = saved(Image.fromarray(noise), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    msg = error_of(path)
    assert msg.startswith("cut.jpg:") and "truncated" in msg


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert error_of(path) == "empty.png: the file is empty"


def test_text_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    msg = error_of(path)
    assert msg.startswith("notes.jpg:") and "not an image" in msg


def test_missing_file(tmp_path):
    assert "no such file" in error_of(tmp_path / "nowhere.jpg")


def test_absurdly_large_image_is_refused_before_decoding():
    msg = error_of(png_claiming(20000, 20000), "huge.png")
    assert msg.startswith("huge.png:") and "400 megapixels" in msg and "limit" in msg


def test_a_real_42_megapixel_png_is_refused(tmp_path):
    path = tmp_path / "big.png"
    Image.new("1", (7000, 6000)).save(path)          # 42 MP, a few kB on disk
    assert path.stat().st_size < 100_000
    assert "megapixel limit" in error_of(path)


def test_file_over_the_byte_limit_is_refused():
    assert "MB limit" in error_of(b"\0" * (MAX_BYTES + 1), "large.bmp")


def test_unsupported_format():
    msg = error_of(saved(Image.new("RGB", (8, 8), (10, 20, 30)), "PCX"), "old.pcx")
    assert msg == "old.pcx: PCX images are not supported (use JPEG, PNG, BMP or WebP)"


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)   # callers that catch ValueError see it too
