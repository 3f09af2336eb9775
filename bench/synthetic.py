"""Seeded test video from real photos: GENKI-4K faces (60-200 px) pasted on textured 640x480
backgrounds and moved a little each frame; every frame comes with the true face boxes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from core.detect import Box, FaceDetector
from core.imageio import load_image

FRAME_W, FRAME_H = 640, 480


def default_genki() -> Path:
    """../shared/datasets/genki4k beside the repository."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "genki4k"


@dataclass(frozen=True)
class SyntheticConfig:
    frames: int = 200
    clip_frames: int = 20                  # a new photo and background every this many frames
    face_px: tuple[int, int] = (60, 200)   # width of the pasted face box (the detector's box in the photo)
    speed_px: float = 3.0                  # movement per frame, at most
    seed: int = 0


@dataclass(frozen=True)
class FacePhoto:
    """A real photo and the face box the photo detector finds in it."""

    image: np.ndarray
    box: Box


def texture(rng: np.random.Generator, width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    """An RGB background: coloured noise at several scales plus a few straight edges."""
    out = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((4, 0.5), (16, 0.3), (64, 0.15), (width // 2, 0.05)):
        noise = rng.random((max(2, cells * height // width), cells, 3)).astype(np.float32)
        out += weight * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    out = np.clip(out * 255, 0, 255).astype(np.uint8)
    for _ in range(6):
        p1 = tuple(int(v) for v in rng.integers(0, (width, height)))
        p2 = tuple(int(v) for v in rng.integers(0, (width, height)))
        cv2.line(out, p1, p2, tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(1, 6)))
    return out


def face_photos(genki: str | Path, n: int, seed: int = 0) -> list[FacePhoto]:
    """`n` GENKI-4K photos (seeded choice) in which the photo detector finds a face, with that face."""
    files = sorted((Path(genki) / "files").glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"{genki}/files: no GENKI-4K photos")
    order = np.random.default_rng(seed).permutation(len(files))
    detector, out = FaceDetector(), []
    for i in order:
        image = load_image(files[i])
        boxes = detector.detect(image)
        if boxes:
            out.append(FacePhoto(image, boxes[0]))
        if len(out) == n:
            break
    return out


def paste(frame: np.ndarray, photo: FacePhoto, box: Box) -> Box:
    """Paste the photo's face, with 0.6 of its side of surroundings on each side, so that the face box
    lands on `box` (its width sets the scale); return the face box actually covered (clipped)."""
    x, y, w, h = photo.box
    s = box[2] / w
    ph, pw = photo.image.shape[:2]
    m = int(0.6 * w)
    x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(pw, x + w + m), min(ph, y + h + m)
    patch = cv2.resize(photo.image[y0:y1, x0:x1], (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))),
                       interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if patch.ndim == 2:
        patch = np.repeat(patch[:, :, None], 3, axis=2)
    fx, fy = round(box[0] - (x - x0) * s), round(box[1] - (y - y0) * s)   # patch corner in the frame
    fh, fw = frame.shape[:2]
    cx0, cy0 = max(0, fx), max(0, fy)
    cx1, cy1 = min(fw, fx + patch.shape[1]), min(fh, fy + patch.shape[0])
    if cx1 > cx0 and cy1 > cy0:
        frame[cy0:cy1, cx0:cx1] = patch[cy0 - fy:cy1 - fy, cx0 - fx:cx1 - fx]
    return (box[0], box[1], box[2], round(h * s))


def synthetic_frames(photos: list[FacePhoto], cfg: SyntheticConfig | None = None
                     ) -> Iterator[tuple[np.ndarray, list[Box]]]:
    """(RGB frame, true face boxes) for `cfg.frames` frames: clips of one moving face each."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    for start in range(0, cfg.frames, cfg.clip_frames):
        photo = photos[(start // cfg.clip_frames) % len(photos)]
        background = texture(rng)
        w0 = float(rng.uniform(*cfg.face_px))
        w1 = float(np.clip(w0 * rng.uniform(0.85, 1.15), *cfg.face_px))
        h_ratio = photo.box[3] / photo.box[2]
        pos = rng.uniform((0, 0), (FRAME_W - w0, FRAME_H - w0 * h_ratio))
        vel = rng.uniform(-1, 1, 2) * cfg.speed_px
        for k in range(min(cfg.clip_frames, cfg.frames - start)):
            w = w0 + (w1 - w0) * k / max(1, cfg.clip_frames - 1)
            lim = np.array([FRAME_W - w, FRAME_H - w * h_ratio])
            pos = pos + vel
            vel = np.where((pos < 0) | (pos > lim), -vel, vel)   # bounce off the edges
            pos = np.clip(pos, 0, lim)
            frame = background.copy()
            box = paste(frame, photo, (int(pos[0]), int(pos[1]), int(round(w)), int(round(w * h_ratio))))
            yield frame, [box]


def found(true: Box, boxes: list[Box], min_iou: float = 0.3) -> bool:
    """Whether one of `boxes` is the true face (overlapping it at least `min_iou`)."""
    from core.tracking import iou

    return any(iou(true, b) >= min_iou for b in boxes)
