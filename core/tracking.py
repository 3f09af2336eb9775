"""Following faces from frame to frame: boxes matched by IoU, probabilities smoothed per face so
labels do not flicker, and the detector run only when needed (boxes are reused in between)."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from core.detect import Box
from core.pipeline import Face, Pipeline, decide


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class TrackingConfig:
    smoothing: float = 0.6       # weight of the past in each face's moving average of probabilities (0: none),
    smoothing_fps: float = 15.0  # ... per frame at this rate: with frame times, slower streams smooth less
    box_smoothing: float = 0.4   # weight of the past for box corners when the detector runs again
    min_iou: float = 0.3         # a new box continues a track when they overlap at least this much
    max_missed: int = 2          # detections a face may be missed and still be shown at its last box
    detect_every: int = 3        # run the detector at least every k-th frame (1: every frame)
    max_motion: float = 12.0     # mean grey-level change (0-255) inside the faces that forces a detection


@dataclass
class Track:
    id: int
    box: Box
    probs: np.ndarray            # smoothed probabilities
    hits: int = 1                # frames this face was seen
    missed: int = 0              # detections in a row that did not find it


class FaceTracker:
    """Matches boxes to tracks (greedy, by IoU) and smooths each track's probabilities."""

    def __init__(self, config: TrackingConfig | None = None):
        self.config = config or TrackingConfig()
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks = []

    def match(self, boxes: list[Box]) -> dict[int, int]:
        """{box index: track index} for the pairs overlapping at least `min_iou`, best overlaps first."""
        pairs = sorted(((iou(b, t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(self.tracks)),
                       reverse=True)
        used_b, used_t, out = set(), set(), {}
        for score, i, j in pairs:
            if score < self.config.min_iou:
                break
            if i not in used_b and j not in used_t:
                out[i] = j
                used_b.add(i)
                used_t.add(j)
        return out

    def coast(self, boxes: list[Box]) -> list[Box]:
        """`boxes` plus the last box of each track the detector just missed (for `max_missed` detections)."""
        matched = set(self.match(boxes).values())
        out = list(boxes)
        for j, t in enumerate(self.tracks):
            if j not in matched and t.missed < self.config.max_missed:
                t.missed += 1
                out.append(t.box)
        return out

    def update(self, boxes: list[Box], probs: np.ndarray, fresh: int | None = None,
               dt: float | None = None) -> list[Track]:
        """The tracks of this frame, in the order of `boxes`; tracks without a box end.
        The first `fresh` boxes (default: all) come from the detector; the others are reused boxes.
        `dt`: seconds since the previous frame, if known (the smoothing then follows time, not frames)."""
        c = self.config
        fresh = len(boxes) if fresh is None else fresh
        w = c.smoothing if dt is None else c.smoothing ** (max(dt, 0.0) * c.smoothing_fps)
        pairs = self.match(boxes)
        tracks = []
        for i, box in enumerate(boxes):
            p = np.asarray(probs[i], np.float32)
            if i in pairs:
                t = self.tracks[pairs[i]]
                t.probs = w * t.probs + (1.0 - w) * p
                if i < fresh:
                    t.box = _blend(t.box, box, c.box_smoothing)
                    t.missed = 0
                t.hits += 1
            else:
                t = Track(self._next_id, tuple(int(v) for v in box), p)
                self._next_id += 1
            tracks.append(t)
        self.tracks = tracks
        return tracks


def _blend(old: Box, new: Box, w: float) -> Box:
    return tuple(int(round(w * o + (1.0 - w) * n)) for o, n in zip(old, new))


@dataclass
class TrackedFace:
    track: int                   # id of the face track (stable while the face stays in view)
    face: Face                   # box, smoothed probabilities and the decision on them


@dataclass
class FaceFollower:
    """A pipeline over a stream of frames: labelled, smoothed faces for each frame. The detector runs
    every `detect_every` frames, when the faces move, or when a face was lost; boxes are reused between."""

    pipeline: Pipeline
    config: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self):
        self.tracker = FaceTracker(self.config)
        self._since_detect = 0
        self._reference: np.ndarray | None = None   # small grey copy of the last detected frame
        self._last_t: float | None = None
        self.detected = False                          # whether the last frame ran the detector

    def reset(self) -> None:
        self.tracker.reset()
        self._since_detect = 0
        self._reference = None
        self._last_t = None

    @property
    def threshold(self) -> float:
        p = self.pipeline
        return p.classifier.meta.threshold if p.threshold is None else p.threshold

    def __call__(self, image: np.ndarray, t: float | None = None) -> list[TrackedFace]:
        """Labelled faces of the next frame; `t`: its time in seconds, if known."""
        dt = None if t is None or self._last_t is None else t - self._last_t
        self._last_t = t
        small = _small_gray(image)
        tracks = self.tracker.tracks
        self.detected = (not tracks or any(t.missed for t in tracks)
                         or self._since_detect + 1 >= self.config.detect_every
                         or self._motion(small, image.shape) > self.config.max_motion)
        if self.detected:
            found = self.pipeline.detector.detect(image)
            boxes, fresh = self.tracker.coast(found), len(found)
            self._reference, self._since_detect = small, 0
        else:
            boxes, fresh = [t.box for t in tracks], 0
            self._since_detect += 1
        faces = self.pipeline.classify(image, boxes)
        tracks = self.tracker.update(boxes, np.array([f.probs for f in faces]), fresh, dt)
        task = self.pipeline.task
        probs = np.array([t.probs for t in tracks]).reshape(len(tracks), task.n_classes)
        idx = decide(probs, task, self.threshold)
        return [TrackedFace(t.id, Face(t.box, p, int(i), task)) for t, p, i in zip(tracks, probs, idx)]

    def _motion(self, small: np.ndarray, shape: tuple) -> float:
        """Mean absolute grey-level change inside the current faces since the last detection."""
        if self._reference is None or self._reference.shape != small.shape or not self.tracker.tracks:
            return float("inf")
        sy, sx = small.shape[0] / shape[0], small.shape[1] / shape[1]
        worst = 0.0
        for t in self.tracker.tracks:
            x, y, w, h = t.box
            ys = slice(max(0, int(y * sy)), max(1, int((y + h) * sy)))
            xs = slice(max(0, int(x * sx)), max(1, int((x + w) * sx)))
            a, b = small[ys, xs], self._reference[ys, xs]
            if a.size:
                worst = max(worst, float(np.mean(cv2.absdiff(a, b))))
        return worst


def _small_gray(image: np.ndarray, side: int = 96) -> np.ndarray:
    """A small grey copy for cheap motion checks."""
    h, w = image.shape[:2]
    s = side / max(h, w)
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
