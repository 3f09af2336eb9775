"""Calibration to one person's calm face: the decision rule moved just far enough that it reads calm.

Some faces read sad, angry or afraid at rest (users of peers' apps call it "stuck on sad"); a tightly framed calm face
can read as a smile. The user holds a calm face for a moment; from the probabilities of those frames (as the stream
shows them, under the current rule) the rule moves until the calm class wins in `share` of them by `margin`: for a
binary task its threshold rises; for one that picks the likeliest class, each class that this face leans to at rest
gets a lower log-probability offset (only those: the face's other expressions keep their sensitivity, which a
raised neutral offset would take from all of them). It only makes the calm class easier to read, never by more than
a cap, and it waits for a still face: a window in which the face changed (a smile starting) is not used, and one
that reads like a real expression is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from core.tasks import Task

if TYPE_CHECKING:
    from core.pipeline import Pipeline

NEUTRAL = "neutral"
EPS = 1e-6


@dataclass(frozen=True)
class CalibrationConfig:
    seconds: float = 1.5          # the calm face is read over this long ...
    min_frames: int = 8           # ... in at least this many frames
    face_share: float = 0.8       # ... with a face in at least this share of them
    steady: float = 0.4           # a still face: no class's probability spreads more than this (10th-90th percentile)
    share: float = 0.9            # afterwards the calm class wins in this share of the frames ...
    margin: float = 0.3           # ... by this much, in log-odds (log-probability against the strongest other class)
    max_offset: float = 2.0       # the most it lowers a class's offset
    max_threshold: float = 0.75   # the highest threshold it sets
    timeout_s: float = 10.0       # without a still face for this long, calibration gives up and says why

    def __post_init__(self):
        if not 0.0 < self.share <= 1.0 or not 0.0 < self.face_share <= 1.0:
            raise ValueError("share and face_share must be in (0, 1]")
        if self.seconds <= 0 or self.min_frames < 2 or self.timeout_s <= self.seconds:
            raise ValueError("calibration needs a positive window of at least 2 frames, shorter than its timeout")


@dataclass(frozen=True)
class Calibration:
    """The outcome: for a binary task the threshold to use (`threshold`), else how much each class's
    log-probability offset moves (`changes`, class name to a negative amount; none for the calm class)."""

    status: str                   # "calibrated", "unchanged" or "refused"
    message: str
    threshold: float | None = None
    changes: dict[str, float] = field(default_factory=dict)
    calm_before: float = 0.0      # share of the window's frames read calm under the old rule
    calm_after: float = 0.0       # ... and under the new one

    @property
    def changed(self) -> bool:
        return self.status == "calibrated"

    def offsets(self, class_bias: Sequence[float], task: Task) -> tuple[float, ...]:
        """`class_bias` (the offsets in use) moved by `changes`."""
        return moved_offsets(class_bias, self.changes, task)


def moved_offsets(class_bias: Sequence[float], changes: dict[str, float], task: Task) -> tuple[float, ...]:
    """Offsets, one per class, with each named class's moved by its change."""
    bias = [float(b) for b in class_bias]
    for name, delta in changes.items():
        bias[task.class_names.index(name)] = round(bias[task.class_names.index(name)] + delta, 4)
    return tuple(bias)


def changes_text(changes: dict[str, float], task: Task) -> str:
    """'sad -1.0, fear -0.3': offset changes as the UI names the classes."""
    return ", ".join(f"{task.display_names[task.class_names.index(n)]} {d:+.1f}" for n, d in changes.items())


def calm_class(task: Task) -> int:
    """The class a calm face should read: the binary task's negative class, else neutral."""
    if task.is_binary:
        return 1 - task.class_names.index(task.positive_class)
    if NEUTRAL not in task.class_names:
        raise ValueError(f"task '{task.name}' has no calm class to calibrate to")
    return task.class_names.index(NEUTRAL)


def spread(probs: np.ndarray) -> float:
    """The largest 10th-to-90th percentile spread of any class's probability over the frames."""
    q10, q90 = np.percentile(probs, [10, 90], axis=0)
    return float(np.max(q90 - q10))


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _step_up(value: float, step: float) -> float:
    """`value` rounded up to a multiple of `step` (the sidebar's steps), so the slider shows it exactly."""
    return round(math.ceil(round(value / step, 6)) * step, 4)


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _already(calm: str, share: float, n: int) -> str:
    return f"Your calm face already reads {calm}" + (f" in {_pct(share)} of the frames" if n > 1 else "")


def _fixed(calm: str, before: float, after: float, n: int, change: str) -> str:
    if n == 1:
        return f"Your calm face did not read {calm}; with {change} it does."
    return (f"Your calm face read {calm} in {_pct(before)} of the frames; with {change} it reads {calm} in "
            f"{_pct(after)}.")


def calibrate(probs: np.ndarray, task: Task, threshold: float | None = None,
              config: CalibrationConfig = CalibrationConfig()) -> Calibration:
    """The rule that reads these frames of a calm face calm. `probs` (frames, classes): one face's
    probabilities as shown under the current rule; `threshold`: the one in use (binary tasks)."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[1] != task.n_classes or len(probs) == 0:
        raise ValueError(f"expected probabilities of shape (frames, {task.n_classes}), got {probs.shape}")
    calm = calm_class(task)
    calm_name = task.display_names[calm]
    if task.is_binary:
        if threshold is None:
            raise ValueError("a binary task calibrates its threshold: give the one in use")
        pos = 1 - calm
        p = probs[:, pos]
        before = float(np.mean(p < threshold))
        # the threshold that puts `share` of the frames below it by `margin` log-odds
        needed = float(1 / (1 + np.exp(-(_logit(np.quantile(p, config.share)) + config.margin))))
        if needed <= threshold:
            return Calibration("unchanged", f"{_already(calm_name, before, len(p))}: the threshold stays "
                               f"{threshold:.2f}.", threshold, {}, before, before)
        value = _step_up(needed, 0.01)
        if value > config.max_threshold:
            return Calibration("refused", f"Your face read {task.display_names[pos]} at {_pct(float(np.median(p)))}: "
                               f"that looks like a real {task.display_names[pos]}, not a calm face. Calibrate again "
                               f"with a calm face (the threshold stays {threshold:.2f}).", threshold, {}, before,
                               before)
        after = float(np.mean(p < value))
        return Calibration("calibrated", _fixed(calm_name, before, after, len(p), f"the threshold at {value:.2f}"),
                           value, {}, before, after)
    logp = np.log(np.clip(probs, EPS, 1.0))
    lead = logp - logp[:, [calm]]                      # each class's lead over the calm class, frame by frame
    before = float(np.mean(np.delete(lead, calm, axis=1).max(axis=1) < 0))
    need = np.quantile(lead, config.share, axis=0) + config.margin
    lower = {i: _step_up(float(need[i]), 0.1) for i in range(task.n_classes) if i != calm and need[i] > 0}
    if not lower:
        return Calibration("unchanged", f"{_already(calm_name, before, len(probs))}: the offsets stay as they are.",
                           None, {}, before, before)
    worst = max(lower, key=lower.get)
    if lower[worst] > config.max_offset:
        return Calibration("refused", f"Your face read {task.display_names[worst]} at "
                           f"{_pct(float(np.median(probs[:, worst])))}: that looks like a real expression, not a calm "
                           "face. Calibrate again with a calm face (the offsets stay as they are).", None, {}, before,
                           before)
    shift = np.zeros(task.n_classes)
    for i, amount in lower.items():
        shift[i] = -amount
    after = float(np.mean(np.delete(lead + shift, calm, axis=1).max(axis=1) < 0))
    changes = {task.class_names[i]: -amount for i, amount in sorted(lower.items(), key=lambda kv: -kv[1])}
    return Calibration("calibrated", _fixed(calm_name, before, after, len(probs), changes_text(changes, task)), None,
                       changes, before, after)


def rule_in_use(pipeline: Pipeline) -> tuple[float | None, tuple[float, ...] | None]:
    """(threshold, offsets) that a pipeline applies: its own, else its model's; the threshold is None for a task
    that picks the likeliest class, the offsets None for a model without any."""
    clf = pipeline.classifier
    threshold = (clf.meta.threshold if pipeline.threshold is None else pipeline.threshold) \
        if pipeline.task.is_binary else None
    return threshold, tuple(clf.class_bias(pipeline.class_bias)) or None


def calibrated(pipeline: Pipeline, result: Calibration) -> Pipeline:
    """The pipeline under a calibration's rule: its threshold (binary tasks), or its offsets moved."""
    if not result.changed:
        return pipeline
    if pipeline.task.is_binary:
        return replace(pipeline, threshold=result.threshold)
    bias = rule_in_use(pipeline)[1] or (0.0,) * pipeline.task.n_classes
    return replace(pipeline, class_bias=result.offsets(bias, pipeline.task))


def calibrate_to_photo(pipeline: Pipeline, image: np.ndarray, config: CalibrationConfig = CalibrationConfig()) -> Calibration:
    """Calibration to the calm face in a photo (its largest face, found as photos are: a deeper search if the
    first finds none); refused, saying so, when the photo shows no face."""
    threshold = rule_in_use(pipeline)[0]
    faces = pipeline(image, thorough=True)
    if not faces:
        return Calibration("refused", "No face found in the photo: use one that shows your face from the front.",
                           threshold)
    face = max(faces, key=lambda f: f.box[2] * f.box[3])
    return calibrate(face.probs[None, :], pipeline.task, threshold, config)


def _clock(record) -> float:
    """A label record's time on the frames' own clock (their capture time) when it has one, else when it was read."""
    return record.t if record.source_t is None else record.source_t


class CalmFaceCalibration:
    """Calibration from a live stream: started at `started` (time.time()); `update(records, now)` with the
    stream's label records (largest face first) until it returns a Calibration. It reads the records made since
    `started` and waits for `seconds` of a still face (timed by the frames' own clock), giving up after
    `timeout_s` of `now`, saying why."""

    def __init__(self, task: Task, threshold: float | None, started: float,
                 config: CalibrationConfig = CalibrationConfig()):
        calm_class(task)                                   # a task without a calm class fails here, not later
        self.task, self.threshold, self.config, self.started = task, threshold, config, started
        self.waiting_for = "frames"                       # what it waits for: "frames", "a face", "a still face"

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline, started: float,
                     config: CalibrationConfig = CalibrationConfig()) -> "CalmFaceCalibration":
        """Calibration of the rule a pipeline applies (its own threshold, else its model's)."""
        return cls(pipeline.task, rule_in_use(pipeline)[0], started, config)

    def update(self, records: Sequence, now: float) -> Calibration | None:
        """A Calibration once a still face was read long enough (or the time is up), else None."""
        cfg = self.config
        recent = [r for r in records if r.t >= self.started]
        done = self._window(recent)
        if done is not None:
            return done
        if now - self.started >= cfg.timeout_s:
            why = {"frames": "no frames came (is the camera on?)",
                   "a face": "no face was seen in most frames (face the camera, in good light)",
                   "a still face": "your face kept changing (hold a calm face still)"}[self.waiting_for]
            return Calibration("refused", f"Calibration gave up after {cfg.timeout_s:.0f} s: {why}.", self.threshold)
        return None

    def _window(self, recent: Sequence) -> Calibration | None:
        cfg = self.config
        if not recent:
            self.waiting_for = "frames"
            return None
        clock = [_clock(r) for r in recent]
        restart = max((i for i in range(1, len(clock)) if clock[i] < clock[i - 1]), default=0)  # the camera restarted
        recent, clock = recent[restart:], clock[restart:]
        if len(recent) < cfg.min_frames or clock[-1] - clock[0] < cfg.seconds:
            return None
        window = [r for r, c in zip(recent, clock) if c >= clock[-1] - cfg.seconds]
        faces = [r.probs[0] for r in window if r.probs]
        if len(faces) < max(cfg.min_frames, cfg.face_share * len(window)):
            self.waiting_for = "a face"
            return None
        probs = np.asarray(faces, np.float64)
        if spread(probs) > cfg.steady:
            self.waiting_for = "a still face"
            return None
        return calibrate(probs, self.task, self.threshold, cfg)
