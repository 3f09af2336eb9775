"""Live video: annotate each webcam frame, keep thread-safe figures for the UI, and a smile shutter.

The frame callback (a WebRTC worker thread) does the work; the page reads `stats()` from its own
thread. Everything shared is behind one lock and copied out, so neither side waits on the other.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.draw import draw_faces
from core.explain import Explainer, FaceExplanation, draw_heat, explain_faces
from core.pipeline import Face, Pipeline
from core.tracking import FaceFollower, TrackedFace, TrackingConfig


@dataclass(frozen=True)
class StreamConfig:
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    window: int = 90                 # latest frames behind the fps and latency figures
    history: int = 300               # latest label records kept for the UI
    shutter_hold_s: float = 1.0      # the shutter fires after the smile lasts this long
    shutter_class: str | None = None # default: the task's positive class, else "happy"
    gap_s: float = 2.0               # a pause longer than this starts over: fps, latency and face tracks
    log_path: Path | None = None     # append one JSON line per frame (tests, debugging)
    catch_up: int = 2                # frames queued behind a stall that are labelled too (older ones are skipped)


@dataclass(frozen=True)
class LabelRecord:
    """What was seen in one frame."""

    t: float                         # wall-clock time (time.time())
    frame: int                       # frames processed before this one
    source_t: float | None           # the frame's own timestamp (capture time, seconds), if it has one
    labels: tuple[str, ...]          # one per face, largest face first
    probs: tuple[tuple[float, ...], ...]
    tracks: tuple[int, ...]


@dataclass(frozen=True)
class Snapshot:
    """A frame captured by the smile shutter."""

    number: int                      # 1, 2, ... (the UI shows each new one once)
    t: float
    probability: float              # the smoothed shutter-class probability that fired it
    clean: np.ndarray                # the RGB frame as the camera gave it
    annotated: np.ndarray            # the same frame with boxes and labels
    faces: tuple[Face, ...] = ()     # the faces labelled in it (what "Why?" explains)


@dataclass(frozen=True)
class LatestFrame:
    """The last processed frame as the camera gave it, with its labelled faces ("Explain this frame")."""

    number: int                      # frames processed before it
    clean: np.ndarray
    faces: tuple[Face, ...]


@dataclass(frozen=True)
class LiveExplanation:
    """Heat maps of the faces of one frame, made in the frame callback when live heat maps are on."""

    frame: int
    tracks: tuple[int, ...]          # the face tracks they belong to (drawn on the next frames too)
    found: tuple[FaceExplanation, ...]
    faces: tuple[Face, ...]


@dataclass(frozen=True)
class StreamStats:
    frames: int = 0
    fps: float = 0.0
    latency_ms: float = 0.0          # median over the window
    latency_p95_ms: float = 0.0
    class_names: tuple[str, ...] = ()
    current: LabelRecord | None = None
    records: tuple[LabelRecord, ...] = ()
    snapshot: Snapshot | None = None
    error: str = ""                  # the last error raised while processing a frame
    skipped: int = 0                 # frames that queued behind a stall beyond `catch_up`, never labelled
    latest: LatestFrame | None = None
    why: LiveExplanation | None = None   # the latest live heat maps (None unless switched on)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.current.labels if self.current else ()


class Shutter:
    """Fires once when the probability stays at or above a threshold for `hold_s` seconds."""

    def __init__(self, hold_s: float):
        self.hold_s = hold_s
        self._since: float | None = None
        self._armed = True

    def update(self, probability: float | None, threshold: float, now: float) -> bool:
        if probability is None or probability < threshold:
            self._since, self._armed = None, True
            return False
        if self._since is None:
            self._since = now
        if self._armed and now - self._since >= self.hold_s:
            self._armed = False
            return True
        return False


def video_frame(rgb: np.ndarray):
    """An av.VideoFrame of an RGB picture, in the encoder's own yuv420p so that it is converted once,
    by OpenCV (a tenth of swscale's time, outside the interpreter lock), not again for every frame the
    encoder sends it. Odd sizes, which 4:2:0 cannot hold, stay RGB."""
    import av

    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        return av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return av.VideoFrame.from_numpy_buffer(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


_STREAM_IDS = itertools.count(1)


class FrameProcessor:
    """Annotates RGB frames with labelled, smoothed faces; thread-safe figures through `stats()`."""

    def __init__(self, pipeline: Pipeline, config: StreamConfig | None = None):
        self.config = config or StreamConfig()
        self.stream_id = next(_STREAM_IDS)     # tells this processor's lines in a shared log apart
        self._lock = threading.Lock()          # guards everything below that the UI reads
        self._work = threading.Lock()          # one frame at a time through the follower
        self._follower = FaceFollower(pipeline, self.config.tracking)
        self._shutter = Shutter(self.config.shutter_hold_s)
        self._times: deque[float] = deque(maxlen=self.config.window)
        self._latency: deque[float] = deque(maxlen=self.config.window)
        self._records: deque[LabelRecord] = deque(maxlen=self.config.history)
        self._frames = 0
        self._skipped = 0
        self._snapshot: Snapshot | None = None
        self._error = ""
        self._latest: LatestFrame | None = None
        self._explainer: Explainer | None = None   # live heat maps: at most one frame each `_why_every_s`
        self._why_every_s = 0.5
        self._why: LiveExplanation | None = None
        self._why_at = -1e9

    @property
    def pipeline(self) -> Pipeline:
        return self._follower.pipeline

    def set_pipeline(self, pipeline: Pipeline) -> None:
        """Use another model or threshold from the next frame on (tracks restart)."""
        if pipeline is self._follower.pipeline:   # the usual case on a rerun: no wait for the frame lock
            return
        with self._work:
            self._follower = FaceFollower(pipeline, self.config.tracking)

    def set_explainer(self, explainer: Explainer | None, every_s: float = 0.5) -> None:
        """Live heat maps over the faces (Grad-CAM of at most one frame each `every_s` seconds), or
        None: none, and no explanation work in the frame callback."""
        with self._lock:
            if explainer is not self._explainer:
                self._why, self._why_at = None, -1e9
            self._explainer, self._why_every_s = explainer, every_s

    def reset(self) -> None:
        """Forget figures, records and the snapshot (a new session of the camera)."""
        with self._work, self._lock:
            self._follower.reset()
            self._times.clear()
            self._latency.clear()
            self._records.clear()
            self._frames = self._skipped = 0
            self._snapshot = None
            self._error = ""
            self._latest, self._why = None, None

    def callback(self, frame):
        """streamlit-webrtc's video_frame_callback: av.VideoFrame in, annotated av.VideoFrame out."""
        start = time.perf_counter()
        out = self.process(frame.to_ndarray(format="rgb24"), start=start, source_t=frame.time)
        new = video_frame(out)
        new.pts, new.time_base = frame.pts, frame.time_base
        self._record_latency(start)
        return new

    async def queued_callback(self, frames: list) -> list:
        """streamlit-webrtc's queued_video_frames_callback: the frames that queued up while the last one
        was processed (a stall: the CPU was busy elsewhere) are labelled in order, the newest
        `config.catch_up` of them, so that tracks, smoothing, the label history and the shutter see them;
        only the newest frame is drawn and sent back (an older picture would only add delay)."""
        *older, newest = frames
        keep = older[max(0, len(older) - self.config.catch_up):]
        for frame in keep:
            start = time.perf_counter()
            self.process(frame.to_ndarray(format="rgb24"), start=start, source_t=frame.time, draw=False)
            self._record_latency(start)
        if len(older) > len(keep):
            with self._lock:
                self._skipped += len(older) - len(keep)
        return [self.callback(newest)]

    def process(self, rgb: np.ndarray, now: float | None = None, start: float | None = None,
                source_t: float | None = None, draw: bool = True) -> np.ndarray:
        """The annotated copy of an RGB frame. `now`: when it arrived, in seconds (default: the clock);
        `source_t`: its capture time, if known (smoothing and the record use it); `draw=False`: label
        only, and return the frame as it came (unless the shutter fires on it)."""
        timed = start is None
        start = time.perf_counter() if start is None else start
        now = time.monotonic() if now is None else now
        with self._work:
            self._maybe_restart(now)
            try:
                faces = self._follower(rgb, now if source_t is None else source_t)
            except Exception as exc:  # a bad frame must not kill the stream; the UI shows the error
                with self._lock:
                    self._error = f"{type(exc).__name__}: {exc}"
                return rgb
            threshold, target = self._shutter_target()
            p = max((float(f.face.probs[target]) for f in faces), default=None) if target is not None else None
            fire = self._shutter.update(p, threshold, now)
            clean = rgb.copy() if fire else None
            out = draw_faces(self._draw_why(rgb.copy(), faces, now), [f.face for f in faces]) if draw or fire else rgb
            record = self._record(faces, source_t, (time.perf_counter() - start) * 1000)
        labelled = tuple(f.face for f in faces)
        with self._lock:
            self._frames += 1
            self._times.append(now)
            self._records.append(record)
            self._latest = LatestFrame(record.frame, rgb, labelled)   # a reference: nothing is copied
            if fire:
                n = self._snapshot.number + 1 if self._snapshot else 1
                self._snapshot = Snapshot(n, record.t, p, clean, out.copy(), labelled)
        if timed:
            self._record_latency(start)
        return out

    def _draw_why(self, out: np.ndarray, faces: list[TrackedFace], now: float) -> np.ndarray:
        """With live heat maps on: explain this frame if the last explanation is old enough (one batched
        Grad-CAM call), and draw the latest maps over the faces of their tracks."""
        with self._lock:
            explainer, every, why, at = self._explainer, self._why_every_s, self._why, self._why_at
        if explainer is None or not faces:
            return out
        if now - at >= every and explainer.classifier is self._follower.pipeline.classifier:
            found = explain_faces(explainer, out, [f.face.box for f in faces], [f.face.index for f in faces])
            why = LiveExplanation(self._frames, tuple(f.track for f in faces), tuple(found),
                                  tuple(f.face for f in faces))
            with self._lock:
                self._why, self._why_at = why, now
        if why is not None:
            heat = dict(zip(why.tracks, why.found))
            for f in faces:
                if f.track in heat:
                    draw_heat(out, f.face.box, heat[f.track].explanation.heat, explainer.preprocess)
        return out

    def _maybe_restart(self, now: float) -> None:
        """After a pause (the camera stopped and started again), old figures and tracks no longer apply."""
        with self._lock:
            if self._times and now - self._times[-1] > self.config.gap_s:
                self._times.clear()
                self._latency.clear()
                self._follower.reset()

    def _shutter_target(self) -> tuple[float, int | None]:
        task = self._follower.pipeline.task
        name = self.config.shutter_class or task.positive_class or ("happy" if "happy" in task.class_names else None)
        if name not in task.class_names:
            return 0.5, None
        threshold = self._follower.threshold if task.is_binary else 0.5
        return threshold, task.class_names.index(name)

    def _record(self, faces: list[TrackedFace], source_t: float | None, ms: float) -> LabelRecord:
        record = LabelRecord(time.time(), self._frames, source_t, tuple(f.face.label for f in faces),
                             tuple(tuple(round(float(p), 4) for p in f.face.probs) for f in faces),
                             tuple(f.track for f in faces))
        if self.config.log_path:
            line = json.dumps({"t": record.t, "stream": self.stream_id, "frame": record.frame, "source_t": source_t,
                               "labels": record.labels, "probs": record.probs, "tracks": record.tracks,
                               "ms": round(ms, 1), "detected": self._follower.detected})
            with open(self.config.log_path, "a") as f:
                f.write(line + "\n")
        return record

    def _record_latency(self, start: float) -> None:
        with self._lock:
            self._latency.append((time.perf_counter() - start) * 1000)

    def stats(self) -> StreamStats:
        """A consistent copy of the live figures (cheap; call it as often as the UI refreshes)."""
        with self._lock:
            times, lat = list(self._times), np.array(self._latency)
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            return StreamStats(
                frames=self._frames, fps=fps,
                latency_ms=float(np.median(lat)) if lat.size else 0.0,
                latency_p95_ms=float(np.percentile(lat, 95)) if lat.size else 0.0,
                class_names=self._follower.pipeline.task.class_names,
                current=self._records[-1] if self._records else None,
                records=tuple(self._records), snapshot=self._snapshot, error=self._error, skipped=self._skipped,
                latest=self._latest, why=self._why if self._explainer is not None else None)
