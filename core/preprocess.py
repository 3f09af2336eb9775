"""The one preprocessing path, shared by training and inference: box -> crop -> resize -> colour.

A model may also ask for deblocking: crops whose source patch shows JPEG's 8 px block grid (a heavily
compressed upload) are smoothed by a small Gaussian blur; other crops are left as they are.

Scaling to [0, 1] is the first layer of every Grin model (a Rescaling layer), so the
arrays made here are uint8 and the normalisation can never drift between training and serving.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import cv2
import numpy as np

from core.detect import Box


MIN_INPUT, MAX_INPUT = 32, 256   # face sides (pixels) a model may take; each task has its default
EQUALIZE = ("none", "clahe")     # per-face contrast normalisation
CLAHE_TILE_PX, CLAHE_CLIP = 8, 2.0   # tiles of a fixed size in pixels, so wider crops equalise alike
JPEG_BLOCK = 8                   # JPEG codes 8x8 pixel blocks on a grid from the picture's top-left corner
MAX_DEBLOCK = 3.0                # the strongest deblocking blur a model may ask for (sigma, px)
DEBLOCK_GATE = 1.4               # blockiness from which a patch counts as heavily compressed (see jpeg_blockiness)


@dataclass(frozen=True)
class PreprocessConfig:
    input_size: int = 64
    color_mode: str = "gray"     # "gray" or "rgb"
    widen: float = 1.2           # crop side / detected box side: frames faces like FER-2013 crops
    shift_y: float = 0.0         # move the crop centre down by this fraction of the box height
    equalize: str = "none"       # "clahe": contrast-limited adaptive histogram equalisation of each crop
    deblock: float = 0.0         # Gaussian sigma (px at input_size) for crops whose source shows JPEG blocks; 0: off

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "gray" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, self.channels)

    def to_dict(self) -> dict:
        """The settings; deblocking only when on, so models and face caches made before it keep their keys."""
        d = asdict(self)
        if not self.deblock:
            d.pop("deblock")
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "PreprocessConfig":
        d = d or {}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def crop_box(box: Box, cfg: PreprocessConfig) -> tuple[int, int, int]:
    """The square crop (x0, y0, side) that frames a detected box."""
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * cfg.widen)))
    cx = x + w / 2.0
    cy = y + h / 2.0 + cfg.shift_y * h
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def whole_image_box(shape: Sequence[int], cfg: PreprocessConfig) -> Box:
    """The box whose crop is the whole image: for faces that are already cropped."""
    h, w = shape[:2]
    bw, bh = w / cfg.widen, h / cfg.widen
    return (int(round((w - bw) / 2)), int(round((h - bh) / 2)), int(round(bw)), int(round(bh)))


def crop_faces(image: np.ndarray, boxes: Sequence[Box], cfg: PreprocessConfig) -> np.ndarray:
    """Model inputs for each box: uint8 array of shape (len(boxes), size, size, channels)."""
    size, out = cfg.input_size, []
    if image.ndim == 2:
        image = image[:, :, None]
    h, w = image.shape[:2]
    for box in boxes:
        x0, y0, side = crop_box(box, cfg)
        x1, y1 = x0 + side, y0 + side
        patch = image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
        if patch.size == 0:
            patch = np.zeros((1, 1, image.shape[2]), np.uint8)
        if cfg.color_mode == "gray" and patch.shape[2] == 3:
            patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)   # before the resize: a third of its work, same pixels within 1
        blocky = bool(cfg.deblock) and jpeg_blockiness(patch, max(0, x0), max(0, y0)) >= DEBLOCK_GATE
        pads = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
        if any(pads) and min(patch.shape[:2]) > 0:
            patch = cv2.copyMakeBorder(patch, *pads, cv2.BORDER_REPLICATE)
        interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
        patch = cv2.resize(patch, (size, size), interpolation=interp)
        if blocky:
            patch = cv2.GaussianBlur(patch, (0, 0), cfg.deblock)
        if patch.ndim == 2:
            patch = patch[:, :, None]
        out.append(equalize(to_color_mode(patch, cfg.color_mode), cfg.equalize))
    return np.stack(out) if out else np.zeros((0, *cfg.input_shape), np.uint8)


def jpeg_blockiness(patch: np.ndarray, x0: int = 0, y0: int = 0) -> float:
    """How strongly a patch shows JPEG's block grid: the mean jump between neighbouring pixels across the
    8 px grid lines over the mean jump elsewhere; (x0, y0) is the patch's place in its picture, whose
    top-left corner the grid starts from. About 1 for pictures as cameras store them (FER-2013: 0.97 median,
    1.32 at the 99th percentile; GENKI-4K: 1.24 and 1.44 at the 95th), about 2 at JPEG quality 10 (FER-2013:
    1.40 at the 1st percentile); 0 for patches too small to tell."""
    gray = patch if patch.ndim == 2 else patch[:, :, 0] if patch.shape[2] == 1 else cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    if min(gray.shape) < 2 * JPEG_BLOCK:
        return 0.0
    gray = gray.astype(np.int16)
    dx, dy = np.abs(np.diff(gray, axis=1)), np.abs(np.diff(gray, axis=0))
    on_x = (x0 + np.arange(1, dx.shape[1] + 1)) % JPEG_BLOCK == 0   # column j and j+1 lie in different blocks
    on_y = (y0 + np.arange(1, dy.shape[0] + 1)) % JPEG_BLOCK == 0
    across = dx[:, on_x].mean() + dy[on_y].mean()
    within = dx[:, ~on_x].mean() + dy[~on_y].mean()
    return float(across / (within + 1e-3))


def to_color_mode(patch: np.ndarray, color_mode: str) -> np.ndarray:
    """(H, W, 1|3) uint8 to the model's colour mode."""
    if color_mode == "gray":
        if patch.shape[2] == 3:
            patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)[:, :, None]
        return patch
    if patch.shape[2] == 1:
        return np.repeat(patch, 3, axis=2)
    return patch


def equalize(patch: np.ndarray, mode: str) -> np.ndarray:
    """(H, W, 1|3) uint8 with its local contrast normalised (CLAHE on the lightness) or as it is."""
    if mode == "none":
        return patch
    if mode != "clahe":
        raise ValueError(f"equalize must be one of {EQUALIZE}, not '{mode}'")
    grid = max(1, int(round(patch.shape[0] / CLAHE_TILE_PX)))
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(grid, grid))
    if patch.shape[2] == 1:
        return clahe.apply(patch[:, :, 0])[:, :, None]
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = clahe.apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
