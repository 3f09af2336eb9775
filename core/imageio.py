"""Reading user images safely: any common format in, an RGB uint8 array out, or a clear error."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000          # absurdly large images are refused before decoding
MAX_BYTES = 50 * 1024 * 1024
SUPPORTED = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "MPO")

Image.MAX_IMAGE_PIXELS = None    # we check the size ourselves, with a clearer message


class ImageError(ValueError):
    """An input that is not a usable image; the message says what is wrong."""


def load_image(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Decode a file path or raw bytes into an RGB uint8 array (EXIF rotation applied)."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        name = name or "upload"
    else:
        path = Path(source)
        name = name or path.name
        if not path.is_file():
            raise ImageError(f"{name}: no such file")
        if path.stat().st_size > MAX_BYTES:
            raise ImageError(f"{name}: file is {path.stat().st_size / 2**20:.0f} MB, over the "
                             f"{MAX_BYTES // 2**20} MB limit")
        data = path.read_bytes()
    if not data:
        raise ImageError(f"{name}: the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{name}: file is {len(data) / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            width, height = img.size
            if fmt not in SUPPORTED:
                raise ImageError(f"{name}: {fmt} images are not supported (use JPEG, PNG, BMP or WebP)")
            if width * height > MAX_PIXELS:
                raise ImageError(f"{name}: image is {width}x{height} = {width * height / 1e6:.0f} "
                                 f"megapixels, over the {MAX_PIXELS / 1e6:.0f} megapixel limit")
            if width == 0 or height == 0:
                raise ImageError(f"{name}: image has no pixels")
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image, or a format Grin cannot read "
                         "(use JPEG, PNG, BMP or WebP)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: the image is corrupt or truncated ({exc})") from None


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F) to an RGB uint8 array."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0                      # 16-bit range to 8-bit
        elif img.mode == "F":
            arr = arr * (255.0 / max(float(arr.max(initial=0)), 1e-6))
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy: callers draw on it


def encode_png(image_rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB array (for downloads)."""
    buf = io.BytesIO()
    Image.fromarray(image_rgb).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image_rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
