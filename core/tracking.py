"""Following faces from frame to frame: boxes matched by IoU, probabilities smoothed per face and
labels held against flicker, and a detection schedule that uses time: the whole frame is searched
now and then, and in between only around each tracked face (settings in DetectorConfig)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.detect import Box, iou
from core.pipeline import Face, Pipeline, decide

__all__ = ["FaceFollower", "FaceTracker", "TrackedFace", "TrackingConfig", "Track", "iou"]


@dataclass(frozen=True)
class TrackingConfig:
    smoothing: float = 0.6       # weight of the past in each face's moving average of probabilities (0: none),
    smoothing_fps: float = 15.0  # ... per frame at this rate: with frame times, slower streams smooth less
    # ... and the bigger a frame's change, the less it is smoothed (the speed term of a one-euro filter): the
    # weight is raised to 1 + smoothing_speed * (largest change of a probability). Noise near the threshold
    # stays smoothed; a confident change of expression shows at once instead of a frame late. 0: fixed weight.
    smoothing_speed: float = 2.0
    box_smoothing: float = 0.4   # weight of the past for box corners when the detector runs again
    min_iou: float = 0.3         # a new box continues a track when they overlap at least this much
    max_missed: int = 2          # detections a face may be missed and still be shown at its last box,
    hold_after: int = 2          # ... once seen in this many frames: a one-frame false detection is not held
    # Label hysteresis (tasks of more than two classes): the shown label changes to a new top class
    # at once when it leads the shown class by `label_margin`, else after it is top `label_frames` frames in a row.
    label_margin: float = 0.15
    label_frames: int = 8
    # A stream reads one test-time view of each face a frame, in turn: the face, its mirror, then each corner crop
    # and its mirror (the expression model's ten-crop test, at a tenth of the cost; the smile model's face and
    # mirror, at half); the smoothing averages them over frames. A face's first frame reads every view, so that
    # its first label is the full test's.
    spread_views: bool = True


@dataclass
class Track:
    id: int
    box: Box
    probs: np.ndarray            # smoothed probabilities
    hits: int = 1                # frames this face was seen
    missed: int = 0              # detections in a row that did not find it
    shown: int = -1              # the class shown (label hysteresis); -1: none yet
    challenger: int = -1         # another top class, and for how many frames in a row it has been top
    challenged: int = 0

    def hold_label(self, top: int, config: TrackingConfig) -> int:
        """The class to show, given this frame's top class of the smoothed probabilities."""
        if self.shown < 0 or top == self.shown:
            self.shown, self.challenger, self.challenged = top, -1, 0
            return self.shown
        self.challenged = self.challenged + 1 if top == self.challenger else 1
        self.challenger = top
        if self.probs[top] - self.probs[self.shown] >= config.label_margin or self.challenged >= config.label_frames:
            self.shown, self.challenger, self.challenged = top, -1, 0
        return self.shown


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
        """`boxes` plus the last box of each track the detector just missed (for `max_missed` detections,
        once the track was seen in `hold_after` frames)."""
        c = self.config
        matched = set(self.match(boxes).values())
        out = list(boxes)
        for j, t in enumerate(self.tracks):
            if j not in matched and t.missed < c.max_missed and t.hits >= c.hold_after:
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
                wt = w ** (1.0 + c.smoothing_speed * float(np.abs(p - t.probs).max()))
                t.probs = wt * t.probs + (1.0 - wt) * p
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
    """A pipeline over a stream of frames: labelled, smoothed faces for each frame, found on the
    detection schedule of the pipeline's DetectorConfig (`full_every`, `fine_every`, `idle_every`, `roi_*`)."""

    pipeline: Pipeline
    config: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self):
        self.tracker = FaceTracker(self.config)
        self._since_fine = 0
        self._whole = 0       # scheduled whole-frame searches while faces were tracked (every fine_every-th is fine)
        self._last_t: float | None = None
        self._frames = 0      # frames seen: picks the view each frame reads (spread_views)
        self.search = ""      # how the last frame was searched: "fine", "coarse" (whole frame) or "near"
        self.raw: list[Face] = []   # the last frame's faces before smoothing (the tracked boxes, this frame's probabilities)

    @property
    def detected(self) -> bool:
        """Whether the last frame was searched whole."""
        return self.search in ("fine", "coarse")

    def reset(self) -> None:
        self.tracker.reset()
        self._since_fine = self._whole = self._frames = 0
        self._last_t = None

    @property
    def threshold(self) -> float:
        p = self.pipeline
        return p.classifier.meta.threshold if p.threshold is None else p.threshold

    def find(self, image: np.ndarray) -> list[Box]:
        """This frame's face boxes, searched as the schedule says (sets `search`)."""
        det = self.pipeline.detector
        cfg, tracks = det.config, self.tracker.tracks
        due = self._since_fine + 1 >= (cfg.full_every if tracks else cfg.idle_every)
        near: list[Box] = []
        lost = False
        if tracks and not due:
            found = [det.search_near(image, t.box) for t in tracks]
            near = _distinct([b for b in found if b is not None])
            # a face just lost (not one already coasting): search the whole frame finely for it
            lost = any(b is None and not t.missed for b, t in zip(found, tracks))
            self.search = "near"
        if due and tracks and not lost:
            self._whole += 1
            if self._whole % max(1, cfg.fine_every):    # a scheduled search, coarse this time (new faces)
                self.search, self._since_fine = "coarse", 0   # ... and the tracked ones where they are,
                near = [det.search_near(image, t.box) for t in tracks]   # small ones included
                return _distinct([b for b in near if b is not None] + det.detect(image))
        if due or lost:
            self.search, self._since_fine = "fine", 0
            return _distinct(near + det.detect_fine(image))
        self._since_fine += 1
        if not tracks:
            self.search = "coarse"
            return det.detect(image)
        return near

    def __call__(self, image: np.ndarray, t: float | None = None) -> list[TrackedFace]:
        """Labelled faces of the next frame; `t`: its time in seconds, if known."""
        dt = None if t is None or self._last_t is None else t - self._last_t
        self._last_t = t
        found = self.find(image)
        boxes, fresh = self.tracker.coast(found), len(found)
        # one view a frame (spread_views), but every view for a face seen for the first time
        new_face = len(self.tracker.match(boxes)) < len(boxes)
        view = self._frames if self.config.spread_views and not new_face else None
        self._frames += 1
        faces = self.raw = self.pipeline.classify(image, boxes, view)
        tracks = self.tracker.update(boxes, np.array([f.probs for f in faces]), fresh, dt)
        task = self.pipeline.task
        probs = np.array([t.probs for t in tracks]).reshape(len(tracks), task.n_classes)
        idx = decide(probs, task, self.threshold)
        if not task.is_binary:
            idx = [t.hold_label(int(i), self.config) for t, i in zip(tracks, idx)]
        return [TrackedFace(t.id, Face(t.box, p, int(i), task)) for t, p, i in zip(tracks, probs, idx)]


def _distinct(boxes: list[Box], max_iou: float = 0.5) -> list[Box]:
    """`boxes` without those overlapping an earlier one by more than `max_iou`."""
    out: list[Box] = []
    for b in boxes:
        if all(iou(b, o) <= max_iou for o in out):
            out.append(b)
    return out
