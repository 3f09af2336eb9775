"""Face detection with OpenCV's Haar frontal-face cascade, on a downscaled copy for speed."""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from functools import partial
from typing import Callable

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the original image


@dataclass(frozen=True)
class DetectorConfig:
    cascade: str = "haarcascade_frontalface_default.xml"
    max_side: int = 320          # detect on a copy whose longer side is at most this many pixels
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face_frac: float = 0.08  # smallest face, as a fraction of the shorter side of the image
    equalize: bool = True
    # Photos (not live video) get a finer, more permissive pass when the first finds nothing...
    retry_scale_factor: float = 1.05
    retry_min_neighbors: int = 3
    # ...and when that finds nothing too: other cascades, then the image turned by these angles
    # (tilted heads), each with the retry settings.
    fallback_cascades: tuple[str, ...] = ("haarcascade_frontalface_alt2.xml",)
    fallback_angles: tuple[float, ...] = (-15.0, 15.0, -30.0, 30.0)
    # Streams (core.tracking.FaceFollower): the whole frame is searched every `full_every` frames, finely
    # (the `full_` settings) each `fine_every`-th time and coarsely (the settings above) the others, and
    # finely when a tracked face is lost; with no face tracked, the fine search runs every `idle_every`
    # frames and the coarse one in between; otherwise each tracked face is
    # looked for only within `roi_margin` (of its side) around its box, at sizes `roi_sizes` times its
    # own, on a copy scaled so that the face is at most `roi_face_px` wide (each width in turn until
    # it is found: a coarse, cheap look first, then a finer one; small faces keep their resolution).
    full_every: int = 2
    fine_every: int = 1
    idle_every: int = 1
    full_max_side: int = 0              # 0: as max_side
    full_scale_factor: float = 0.0      # 0: as scale_factor
    full_min_face_px: int = 0           # smallest face of the fine search, in frame pixels; 0: min_face_frac
    roi_margin: float = 0.3
    roi_face_px: tuple[int, ...] = (40, 64)
    roi_scale_factor: float = 1.1
    roi_sizes: tuple[float, float] = (0.8, 1.25)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "DetectorConfig":
        d = d or {}
        return cls(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in d.items() if k in cls.__dataclass_fields__})


# Live video (webcam, the benchmark): faces are large and the tracker reuses boxes between
# detections, so a smaller, coarser search is worth its speed. Measured by `python -m bench --sweep`:
# 10 ms per 640x480 frame against 40 ms for the photo settings; Haar normalises each window's
# contrast itself, so histogram equalisation only costs time here.
# In a stream the whole frame is searched every 20 frames (1.3 s at 15 fps): coarsely (about 8 ms, new
# faces from 72 px), and every third time finely (full resolution, OpenCV's finer scale steps, faces from
# 50 px: what finds the small faces, 40-120 ms), and finely at once when a face is lost.
LIVE_DETECTOR = DetectorConfig(max_side=240, scale_factor=1.2, min_face_frac=0.15, equalize=False,
                               full_every=20, fine_every=3, idle_every=5, full_max_side=640,
                               full_scale_factor=1.1, full_min_face_px=50)


class FaceDetector:
    """Finds all frontal faces in an RGB (or gray) image. Safe to share between threads."""

    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self._local = threading.local()
        for name in (self.config.cascade, *self.config.fallback_cascades):
            self._cascade(name)  # fail early if a cascade file is missing

    def _cascade(self, name: str | None = None) -> cv2.CascadeClassifier:
        """This thread's copy of a cascade (OpenCV's are not safe to share between threads)."""
        name = name or self.config.cascade
        cascades = self._local.__dict__.setdefault("cascades", {})
        if name not in cascades:
            path = cv2.data.haarcascades + name
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise RuntimeError(f"could not load the Haar cascade {path}")
            cascades[name] = cascade
        return cascades[name]

    def detect(self, image: np.ndarray, thorough: bool = False) -> list[Box]:
        """Boxes of the faces in `image`, largest first, in original pixel coordinates.
        `thorough`: when nothing is found, search deeper: finer scales and fewer neighbours, then the
        fallback cascades, then turned copies (for photos, where a few more milliseconds do not matter)."""
        cfg = self.config
        gray = _gray(image)
        small, scale = _shrink(gray, cfg.max_side)
        if cfg.equalize:
            small = cv2.equalizeHist(small)
        min_side = max(20, int(min(small.shape[:2]) * cfg.min_face_frac))
        found = self._cascade().detectMultiScale(
            small, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors,
            minSize=(min_side, min_side))
        if thorough and len(found) == 0:
            found = self._deeper_search(small, min_side)
        return _largest_first(found, scale)

    def detect_fine(self, image: np.ndarray) -> list[Box]:
        """The finer whole-frame search of streams (the `full_` settings), largest first."""
        cfg = self.config
        small, scale = _shrink(_gray(image), cfg.full_max_side or cfg.max_side)
        if cfg.equalize:
            small = cv2.equalizeHist(small)
        min_side = max(20, round(cfg.full_min_face_px * scale) if cfg.full_min_face_px
                       else int(min(small.shape[:2]) * cfg.min_face_frac))
        found = self._cascade().detectMultiScale(
            small, scaleFactor=cfg.full_scale_factor or cfg.scale_factor, minNeighbors=cfg.min_neighbors,
            minSize=(min_side, min_side))
        return _largest_first(found, scale)

    def search_near(self, image: np.ndarray, box: Box) -> Box | None:
        """The face within a margin around `box` (a tracked face), of about its size: the found box
        overlapping `box` most, or the nearest one; None when there is none."""
        cfg = self.config
        x, y, w, h = box
        side = max(w, h, 1)
        m = cfg.roi_margin * side
        ih, iw = image.shape[:2]
        x0, y0 = int(max(0, x - m)), int(max(0, y - m))
        x1, y1 = int(min(iw, x + w + m)), int(min(ih, y + h + m))
        if x1 - x0 < 24 or y1 - y0 < 24:
            return None
        gray, boxes, tried = _gray(image[y0:y1, x0:x1]), [], set()
        for face_px in cfg.roi_face_px:
            small, scale = _shrink(gray, max(x1 - x0, y1 - y0) * face_px / side)
            if scale in tried:      # a small face: the same copy as the look before
                continue
            tried.add(scale)
            if cfg.equalize:
                small = cv2.equalizeHist(small)
            lo, hi = (max(20, int(side * scale * f)) for f in cfg.roi_sizes)
            found = self._cascade().detectMultiScale(
                small, scaleFactor=cfg.roi_scale_factor, minNeighbors=cfg.min_neighbors, minSize=(lo, lo),
                maxSize=(hi, hi))
            boxes = [(bx + x0, by + y0, bw, bh) for bx, by, bw, bh in _largest_first(found, scale)]
            if boxes:
                break
        if not boxes:
            return None
        cx, cy = x + w / 2, y + h / 2
        return min(boxes, key=lambda b: (-iou(b, box), (b[0] + b[2] / 2 - cx) ** 2 + (b[1] + b[3] / 2 - cy) ** 2))

    def _retry(self, gray: np.ndarray, min_side: int, cascade: str | None = None) -> np.ndarray:
        cfg = self.config
        return np.asarray(self._cascade(cascade).detectMultiScale(
            gray, scaleFactor=cfg.retry_scale_factor, minNeighbors=cfg.retry_min_neighbors,
            minSize=(min_side, min_side))).reshape(-1, 4)

    def _deeper_search(self, small: np.ndarray, min_side: int) -> np.ndarray:
        """For photos where the first pass found nothing: finer scales, other cascades, turned copies."""
        retry = partial(self._retry, min_side=min_side)
        searches = [partial(retry, small)]
        searches += [partial(retry, small, cascade=name) for name in self.config.fallback_cascades]
        searches += [partial(_rotated_search, small, angle, retry) for angle in self.config.fallback_angles]
        for search in searches:
            found = search()
            if len(found):
                return found
        return np.empty((0, 4), int)


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _shrink(gray: np.ndarray, max_side: float) -> tuple[np.ndarray, float]:
    """`gray` scaled down (never up) so its longer side is at most `max_side`, and the scale."""
    h, w = gray.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return gray, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale


def _largest_first(found, scale: float) -> list[Box]:
    """Cascade boxes of a copy scaled by `scale`, in original pixels, largest first."""
    boxes = [tuple(int(round(v / scale)) for v in b) for b in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _rotated_search(gray: np.ndarray, angle: float, search: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run `search` on `gray` turned by `angle` degrees (canvas grown to keep the corners) and map
    each box's centre back to `gray`; a box keeps its size, axis-aligned in the original."""
    h, w = gray.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(rot[0, 0]), abs(rot[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    rot[0, 2] += nw / 2 - w / 2
    rot[1, 2] += nh / 2 - h / 2
    turned = cv2.warpAffine(gray, rot, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    back = cv2.invertAffineTransform(rot)
    boxes = []
    for x, y, bw, bh in search(turned):
        cx, cy = back @ np.array([x + bw / 2, y + bh / 2, 1.0])
        x0 = min(max(cx - bw / 2, 0), max(w - bw, 0))    # kept inside the image
        y0 = min(max(cy - bh / 2, 0), max(h - bh, 0))
        boxes.append((int(round(x0)), int(round(y0)), min(bw, w), min(bh, h)))
    return np.asarray(boxes, dtype=int).reshape(-1, 4)
