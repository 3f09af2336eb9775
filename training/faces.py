"""From dataset samples to preprocessed face crops, through the inference detector, cached on disk."""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from core.detect import DetectorConfig, FaceDetector
from core.fileio import write_bytes_atomic
from core.imageio import ImageError, load_image
from core.preprocess import PreprocessConfig, crop_faces, whole_image_box
from training.datasets import Dataset, Sample

FACE_MODES = ("auto", "detect", "cropped", "whole")
CROP_MAX_SIDE = 100   # "auto" takes images up to this size (shorter side) as face crops


@dataclass
class Faces:
    """Crops for every sample of a dataset, in sample order."""

    x: np.ndarray          # uint8 (N, size, size, channels)
    found: np.ndarray      # bool: a face was detected (False: whole image used, or unreadable)
    readable: np.ndarray   # bool: the file could be decoded
    boxes: np.ndarray      # int (N, 4): the box used, in the original image

    @property
    def n_fallback(self) -> int:
        return int((~self.found & self.readable).sum())


def cache_dir() -> Path:
    return Path(os.environ.get("GRIN_CACHE", Path.home() / ".cache" / "grin"))


def _uses_detection(cropped: bool, mode: str, shape: tuple[int, ...]) -> bool:
    if mode == "detect":
        return True
    if mode in ("cropped", "whole"):
        return False
    return not cropped and min(shape[:2]) > CROP_MAX_SIDE  # auto: small images are taken as crops


def face_box(image: np.ndarray, cropped: bool, mode: str, detector: FaceDetector,
             pp: PreprocessConfig) -> tuple[tuple, bool]:
    """(box, found) for a dataset image: its largest detected face, else the box that frames it whole."""
    if _uses_detection(cropped, mode, image.shape):
        boxes = detector.detect(image, thorough=True)
        if boxes:
            return tuple(boxes[0]), True
    return whole_image_box(image.shape, pp), False


def face_from_image(image: np.ndarray, cropped: bool, mode: str, detector: FaceDetector,
                    pp: PreprocessConfig) -> tuple[np.ndarray, bool, tuple]:
    """One crop for a dataset image: the largest detected face, else the whole image."""
    box, found = face_box(image, cropped, mode, detector, pp)
    return crop_faces(image, [box], pp)[0], found, box


def _read(sample: Sample) -> np.ndarray:
    if isinstance(sample.source, np.ndarray):
        return sample.source
    if Path(sample.source).suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"):
        img = cv2.imread(sample.source, cv2.IMREAD_COLOR)  # fast path for the common formats
        if img is not None:
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return load_image(sample.source)


def extract_faces(ds: Dataset, pp: PreprocessConfig, mode: str = "auto",
                  detector_cfg: DetectorConfig | None = None, use_cache: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> Faces:
    """Crops for all samples (cached by dataset content and preprocessing settings)."""
    if mode not in FACE_MODES:
        raise ValueError(f"faces must be one of {FACE_MODES}, not '{mode}'")
    detector_cfg = detector_cfg or DetectorConfig()
    key = _cache_key(ds, pp, mode, detector_cfg)
    path = cache_dir() / "faces" / f"{ds.name}-{ds.task.name}-{key}.npz"
    if use_cache and path.is_file():
        with np.load(path) as z:
            return Faces(z["x"], z["found"], z["readable"], z["boxes"])
    detector = FaceDetector(detector_cfg)
    n = len(ds.samples)
    x = np.zeros((n, *pp.input_shape), np.uint8)
    found, readable = np.zeros(n, bool), np.ones(n, bool)
    boxes = np.zeros((n, 4), np.int32)
    for i, s in enumerate(ds.samples):
        try:
            img = _read(s)
        except (ImageError, OSError):
            readable[i] = False
            continue
        x[i], found[i], boxes[i] = face_from_image(img, s.cropped, mode, detector, pp)
        if progress and (i % 200 == 0 or i == n - 1):
            progress(i + 1, n)
    if use_cache:
        _save_npz(path, x=x, found=found, readable=readable, boxes=boxes)
    if progress:
        progress(n, n)
    return Faces(x, found, readable, boxes)


def _cache_key(ds: Dataset, pp: PreprocessConfig, mode: str, det: DetectorConfig) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([ds.name, ds.root, pp.to_dict(), mode, det.to_dict(), 2]).encode())
    for s in ds.samples:
        h.update(s.group.encode())
        h.update(str(s.label).encode())
    return h.hexdigest()[:16]


def wide_crops(ds: Dataset, faces: Faces, pp: PreprocessConfig, use_cache: bool = True) -> Faces:
    """Crops at `pp` (a wider framing) around the boxes `faces` already used: no second detection."""
    h = hashlib.sha1(json.dumps([ds.name, ds.root, pp.to_dict(), "wide", 1]).encode())
    h.update(faces.boxes.tobytes())
    h.update(faces.readable.tobytes())
    path = cache_dir() / "faces" / f"{ds.name}-{ds.task.name}-wide-{h.hexdigest()[:16]}.npz"
    if use_cache and path.is_file():
        with np.load(path) as z:
            return Faces(z["x"], faces.found, faces.readable, faces.boxes)
    x = np.zeros((len(ds.samples), *pp.input_shape), np.uint8)
    for i in np.flatnonzero(faces.readable):
        x[i] = crop_faces(_read(ds.samples[i]), [tuple(int(v) for v in faces.boxes[i])], pp)[0]
    if use_cache:
        _save_npz(path, x=x)
    return Faces(x, faces.found, faces.readable, faces.boxes)


def framed_views(ds: Dataset, faces: Faces, pp: PreprocessConfig, detector_cfg: DetectorConfig | None = None,
                 use_cache: bool = True) -> Faces:
    """For `--faces cropped`: a second view of each image over CROP_MAX_SIDE pixels, framed around its
    largest detected face the way the model's crops are (`found` is False where there is none).

    Averaged with the whole-image view, it rescues faces cropped more loosely than the model's data
    and leaves tight crops about as they were (measured in the README)."""
    detector_cfg = detector_cfg or DetectorConfig()
    h = hashlib.sha1(json.dumps([ds.name, ds.root, pp.to_dict(), detector_cfg.to_dict(), "framed", 1]).encode())
    h.update(faces.readable.tobytes())
    for s in ds.samples:
        h.update(s.group.encode())
    path = cache_dir() / "faces" / f"{ds.name}-{ds.task.name}-framed-{h.hexdigest()[:16]}.npz"
    if use_cache and path.is_file():
        with np.load(path) as z:
            return Faces(z["x"], z["found"], faces.readable, z["boxes"])
    detector = FaceDetector(detector_cfg)
    x = np.zeros_like(faces.x)
    found = np.zeros(len(ds.samples), bool)
    boxes = np.zeros((len(ds.samples), 4), np.int32)
    for i in np.flatnonzero(faces.readable):
        img = _read(ds.samples[i])
        if min(img.shape[:2]) <= CROP_MAX_SIDE:
            continue
        found_boxes = detector.detect(img)
        if found_boxes:
            x[i], found[i], boxes[i] = crop_faces(img, found_boxes[:1], pp)[0], True, found_boxes[0]
    if use_cache:
        _save_npz(path, x=x, found=found, boxes=boxes)
    return Faces(x, found, faces.readable, boxes)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """A cache file written atomically, so a killed run never leaves a truncated one."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())
