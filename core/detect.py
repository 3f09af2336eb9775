"""Face detection with OpenCV's Haar frontal-face cascade, on a downscaled copy for speed."""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

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
    # Photos (not live video) get a second, more permissive pass when the first finds nothing.
    retry_scale_factor: float = 1.05
    retry_min_neighbors: int = 3
    # ...and, if that finds nothing either, the same search on copies rotated by these angles
    # (degrees): the frontal cascade misses heads tilted beyond ~25 degrees.
    retry_angles: tuple[float, ...] = (10.0, -10.0, 20.0, -20.0, 30.0, -30.0)

    def __post_init__(self):
        object.__setattr__(self, "retry_angles", tuple(float(a) for a in self.retry_angles))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["retry_angles"] = list(self.retry_angles)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "DetectorConfig":
        d = d or {}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# Live video (webcam, the benchmark): faces are large and the tracker reuses boxes between
# detections, so a smaller, coarser search is worth its speed. Measured by `python -m bench --sweep`:
# 10 ms per 640x480 frame against 40 ms for the photo settings; Haar normalises each window's
# contrast itself, so histogram equalisation only costs time here.
LIVE_DETECTOR = DetectorConfig(max_side=240, scale_factor=1.2, min_face_frac=0.15, equalize=False)


class FaceDetector:
    """Finds all frontal faces in an RGB (or gray) image. Safe to share between threads."""

    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self._path = cv2.data.haarcascades + self.config.cascade
        self._local = threading.local()
        self._cascade()  # fail early if the cascade file is missing

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(self._path)
            if cascade.empty():
                raise RuntimeError(f"could not load the Haar cascade {self._path}")
            self._local.cascade = cascade
        return cascade

    def detect(self, image: np.ndarray, thorough: bool = False) -> list[Box]:
        """Boxes of the faces in `image`, largest first, in original pixel coordinates.
        `thorough`: when nothing is found, search again with finer scales and fewer neighbours
        (for photos, where a few more milliseconds do not matter)."""
        cfg = self.config
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape[:2]
        scale = min(1.0, cfg.max_side / max(h, w))
        small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1.0 else gray
        if cfg.equalize:
            small = cv2.equalizeHist(small)
        min_side = max(20, int(min(small.shape[:2]) * cfg.min_face_frac))
        found = self._cascade().detectMultiScale(
            small, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors,
            minSize=(min_side, min_side))
        if thorough and len(found) == 0:
            found = self._cascade().detectMultiScale(
                small, scaleFactor=cfg.retry_scale_factor, minNeighbors=cfg.retry_min_neighbors,
                minSize=(min_side, min_side))
            if len(found) == 0:
                found = self._rotated_search(small, min_side)
        boxes = [tuple(int(round(v / scale)) for v in b) for b in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: -b[2] * b[3])

    def _rotated_search(self, gray: np.ndarray, min_side: int) -> np.ndarray:
        """The permissive search on copies rotated by each of `retry_angles`; the angle whose best
        box gathered the most neighbouring detections wins (a false find rarely gathers many).
        Boxes keep their size, centred where the face is in the unrotated image, so the crop holds
        the tilted face, as rotation augmentation taught the models."""
        cfg = self.config
        h, w = gray.shape[:2]
        best, best_votes = np.zeros((0, 4)), 0
        for angle in cfg.retry_angles:
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            rotated = cv2.warpAffine(gray, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            found, votes = self._cascade().detectMultiScale2(
                rotated, scaleFactor=cfg.retry_scale_factor, minNeighbors=cfg.retry_min_neighbors,
                minSize=(min_side, min_side))
            found = np.asarray(found).reshape(-1, 4)
            if len(found) and int(np.max(votes)) > best_votes:
                back = cv2.invertAffineTransform(m)
                centres = np.c_[found[:, :2] + found[:, 2:] / 2, np.ones(len(found))] @ back.T
                best = _clip_boxes(np.c_[centres - found[:, 2:] / 2, found[:, 2:]], w, h)
                best_votes = int(np.max(votes))
        return best


def _clip_boxes(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    """Shift boxes (x, y, bw, bh) to lie inside a w x h image where they can."""
    b = boxes.astype(float).copy()
    b[:, 0] = np.clip(b[:, 0], 0, np.maximum(0, w - b[:, 2]))
    b[:, 1] = np.clip(b[:, 1], 0, np.maximum(0, h - b[:, 3]))
    return b
