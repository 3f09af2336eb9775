"""The framings and picture conditions users bring, made from a real photo and its face box.

Each condition turns (RGB or gray photo, face box) into the picture a user would hand Grin: a tight
eyes-to-chin crop, a loose head-and-shoulders crop, a small gray thumbnail, a heavily compressed JPEG,
a dark or a flat (low-contrast) exposure. The picture then goes through the product's own path
(`training.faces.face_from_image`, mode "auto"), so a condition measures what a user would see.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from core.detect import Box
from core.preprocess import PreprocessConfig, crop_faces

Condition = Callable[[np.ndarray, Box], np.ndarray]

TIGHT_SIDE, TIGHT_CENTRE_Y = 0.8, 0.65   # eyes to chin: side and centre height in box heights from its top
LOOSE_SIDE = 2.2                         # head and shoulders: side in box sides
JPEG_QUALITY = 10
DARK_GAIN = 0.3                          # an underexposed picture: 30 % of the light
LOW_CONTRAST = 0.3                       # a flat picture: 30 % of the contrast around its mean


def _square(image: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """A square cut of `image` centred at (cx, cy); parts outside it repeat its border."""
    box_side = side / PreprocessConfig().widen   # crop_faces widens a box: undo it to cut exactly `side`
    box = (int(round(cx - box_side / 2)), int(round(cy - box_side / 2)), int(round(box_side)), int(round(box_side)))
    out_side = max(8, int(round(side)))
    pp = PreprocessConfig(input_size=out_side, color_mode="rgb" if image.ndim == 3 else "gray")
    crop = crop_faces(image, [box], pp)[0]
    return crop if image.ndim == 3 else crop[:, :, 0]


def tight(image: np.ndarray, box: Box) -> np.ndarray:
    """The face box shrunk to the eyes-to-chin area, at the photo's own resolution."""
    x, y, w, h = box
    return _square(image, x + w / 2, y + TIGHT_CENTRE_Y * h, TIGHT_SIDE * max(w, h))


def loose(image: np.ndarray, box: Box) -> np.ndarray:
    """A head-and-shoulders square around the face, cut from the real photo around it."""
    x, y, w, h = box
    return _square(image, x + w / 2, y + h / 2, LOOSE_SIDE * max(w, h))


def _gray_thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_LINEAR)


def gray_face(size: int) -> Condition:
    """The face framed as the detector frames it (FER-2013's framing), as a `size` px gray thumbnail."""
    def make(image: np.ndarray, box: Box) -> np.ndarray:
        x, y, w, h = box
        side = PreprocessConfig().widen * max(w, h)
        return _gray_thumbnail(_square(image, x + w / 2, y + h / 2, side), size)
    return make


def tight_gray(size: int) -> Condition:
    """A tight eyes-to-chin crop as a `size` px gray thumbnail (LFW-style smile collections)."""
    return lambda image, box: _gray_thumbnail(tight(image, box), size)


def jpeg(image: np.ndarray, box: Box, quality: int = JPEG_QUALITY) -> np.ndarray:
    """The photo after strong JPEG compression."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    out = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if out.ndim == 3 else out


def dark(image: np.ndarray, box: Box) -> np.ndarray:
    """An underexposed photo."""
    return np.clip(image.astype(np.float32) * DARK_GAIN, 0, 255).round().astype(np.uint8)


def low_contrast(image: np.ndarray, box: Box) -> np.ndarray:
    """A flat photo: contrast squeezed around its mean."""
    f = image.astype(np.float32)
    return np.clip(f.mean() + (f - f.mean()) * LOW_CONTRAST, 0, 255).round().astype(np.uint8)


CONDITIONS: dict[str, Condition] = {
    "tight": tight,
    "tight-gray64": tight_gray(64),
    "loose": loose,
    "gray64": gray_face(64),
    "gray48": gray_face(48),
    "jpeg10": jpeg,
    "dark": dark,
    "low-contrast": low_contrast,
}
# conditions that make sense on a collection of small, already tight face crops (FER-2013's 48 px)
CROP_CONDITIONS = ("tight", "jpeg10", "dark", "low-contrast")
