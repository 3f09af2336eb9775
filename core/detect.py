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

    def to_dict(self) -> dict:
        return asdict(self)

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
        boxes = [tuple(int(round(v / scale)) for v in b) for b in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: -b[2] * b[3])
