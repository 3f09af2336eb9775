"""Speed benchmark of the recognition pipeline on real 640x480 frames: `python -m bench --json out.json`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from core.imageio import load_image

FRAME_W, FRAME_H = 640, 480
VIDEO = "smile_video.mp4"
VIDEO_FRAME = 40                      # smiling, facing the camera
MOSAIC = ("happy", "neutral", "surprised", "sad")   # expressions/<name>.jpg, left to right, top to bottom
EXPECTED_FACES = {"one_face": 1, "four_faces": 4}


class MediaError(FileNotFoundError):
    """The benchmark's media folder or one of its files is missing."""


def default_media() -> Path:
    """../shared/media beside the repository."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "media"


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale `image` to fit inside width x height, keeping its aspect, centred on black."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return out


def _need(path: Path) -> Path:
    if not path.is_file():
        raise MediaError(f"{path}: missing; the benchmark needs the shared media folder "
                         "(smile_video.mp4 and expressions/*.jpg), pass it with --media")
    return path


def one_face_frame(media: str | Path) -> np.ndarray:
    """A frame of smile_video.mp4 letterboxed into 640x480 (RGB)."""
    import av

    path = _need(Path(media) / VIDEO)
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == VIDEO_FRAME:
                return letterbox(frame.to_ndarray(format="rgb24"), FRAME_W, FRAME_H)
    raise MediaError(f"{path}: fewer than {VIDEO_FRAME + 1} frames")


def four_faces_frame(media: str | Path) -> np.ndarray:
    """A 2x2 mosaic of four expression photos, each letterboxed into a 320x240 quarter (RGB)."""
    cw, ch = FRAME_W // 2, FRAME_H // 2
    out = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    for k, name in enumerate(MOSAIC):
        img = load_image(_need(Path(media) / "expressions" / f"{name}.jpg"))
        r, c = divmod(k, 2)
        out[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = letterbox(img, cw, ch)
    return out


def frames(media: str | Path) -> dict[str, np.ndarray]:
    return {"one_face": one_face_frame(media), "four_faces": four_faces_frame(media)}


def measure(fns: dict[str, Callable[[], object]], iterations: int, min_seconds: float,
            warmup: int = 5) -> dict[str, dict[str, list[float]]]:
    """Wall-clock and process CPU milliseconds of each function, called in turn (so all see the
    same machine load), at least `iterations` times each and for at least `min_seconds` in all."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: {"wall": [], "cpu": []} for name in fns}
    start, done = time.perf_counter(), 0
    while done < iterations or time.perf_counter() - start < min_seconds:
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name]["wall"].append((time.perf_counter() - t0) * 1000)
            times[name]["cpu"].append((time.process_time() - c0) * 1000)
        done += 1
    return times


class Stopwatch:
    """Wall and CPU milliseconds of calls, kept per named side (for interleaved comparisons)."""

    def __init__(self, *sides: str):
        self.ms: dict[str, list[float]] = {s: [] for s in sides}
        self.cpu: dict[str, list[float]] = {s: [] for s in sides}

    def record(self, side: str, ms: float, cpu_ms: float) -> None:
        self.ms[side].append(ms)
        self.cpu[side].append(cpu_ms)

    def __call__(self, side: str, fn: Callable[[], object]):
        """fn()'s result, its times recorded under `side`."""
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        self.record(side, (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000)
        return out


def summarize(times_ms: list[float]) -> dict:
    arr = np.asarray(times_ms)
    return {"median": round(float(np.median(arr)), 3), "p95": round(float(np.percentile(arr, 95)), 3),
            "mean": round(float(arr.mean()), 3), "min": round(float(arr.min()), 3), "n": int(arr.size)}

