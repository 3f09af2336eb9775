"""Annotating a video file: decode with PyAV, label the faces of every frame (smoothed per face),
encode an H.264 MP4 that browsers play, and keep per-frame probabilities for a timeline."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import cv2

from core.draw import draw_faces
from core.pipeline import Pipeline
from core.tracking import FaceFollower, TrackingConfig

ENCODERS = ("libx264", "h264", "mpeg4")   # first one PyAV's ffmpeg has; browsers play H.264 only
Progress = Callable[[float, str], None]


class VideoError(ValueError):
    """A video that cannot be used; the message says why."""


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 100 * 2**20
    max_seconds: float = 60.0
    max_frames: int = 1800
    max_pixels: int = 3840 * 2160     # per input frame
    out_max_side: int = 960           # the annotated video is scaled down to this longer side


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    duration_s: float
    frames: int                       # as the file says (0 when unknown)
    codec: str


@dataclass
class VideoResult:
    path: Path                        # the annotated MP4
    info: VideoInfo                   # of the input
    frames: int                       # frames annotated
    fps: float
    encoder: str
    class_names: tuple[str, ...]
    timeline: list[dict] = field(default_factory=list)  # one row per face per frame
    warning: str = ""                 # e.g. a damaged end that was skipped

    @property
    def faces_found(self) -> bool:
        return bool(self.timeline)


def _open(source: str | os.PathLike | bytes, name: str, limits: VideoLimits):
    if isinstance(source, (bytes, bytearray)):
        size, target = len(source), io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise VideoError(f"{name}: no such file")
        size, target = path.stat().st_size, str(path)
    if size == 0:
        raise VideoError(f"{name}: the file is empty")
    if size > limits.max_bytes:
        raise VideoError(f"{name}: file is {size / 2**20:.0f} MB, over the {limits.max_bytes // 2**20} MB limit")
    try:
        container = av.open(target, "r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{name}: not a video, or a damaged one ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{name}: the file has no video stream")
    return container


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__


def probe(source: str | os.PathLike | bytes, name: str = "video", limits: VideoLimits | None = None) -> VideoInfo:
    """Size, rate and length of a video, checked against `limits` (VideoError if it breaks one)."""
    limits = limits or VideoLimits()
    with _open(source, name, limits) as container:
        return _check(container, name, limits)


def _check(container, name: str, limits: VideoLimits) -> VideoInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    w, h = ctx.width, ctx.height
    if not w or not h:
        raise VideoError(f"{name}: the video stream has no picture size (damaged file?)")
    if w * h > limits.max_pixels:
        raise VideoError(f"{name}: frames are {w}x{h}, over the limit of {limits.max_pixels / 1e6:.1f} megapixels")
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    fps = float(rate) if 1 <= float(rate) <= 120 else 25.0
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1e6
    else:
        duration = 0.0
    if duration > limits.max_seconds:
        raise VideoError(f"{name}: the video lasts {duration:.0f} s; the limit is {limits.max_seconds:.0f} s "
                         "(cut it shorter first)")
    frames = int(stream.frames or 0)
    if frames > limits.max_frames:
        raise VideoError(f"{name}: the video has {frames} frames; the limit is {limits.max_frames}")
    return VideoInfo(w, h, fps, duration, frames, ctx.name or "")


def _output_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(w, h))
    return max(2, int(w * s) // 2 * 2), max(2, int(h * s) // 2 * 2)


def _add_stream(out, fps: float, size: tuple[int, int]):
    for name in ENCODERS:
        try:
            stream = out.add_stream(name, rate=Fraction(fps).limit_denominator(1001))
        except (av.FFmpegError, ValueError, av.codec.codec.UnknownCodecError):
            continue
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if name in ("libx264", "h264"):
            stream.options = {"crf": "23", "preset": "veryfast"}
        return stream, name
    raise VideoError("no video encoder available in this PyAV build")


def annotate_video(source: str | os.PathLike | bytes, out_path: str | os.PathLike, pipeline: Pipeline,
                   name: str = "video", limits: VideoLimits | None = None,
                   tracking: TrackingConfig | None = None, progress: Progress | None = None) -> VideoResult:
    """Write the annotated MP4 to `out_path`; per-frame face probabilities in the result's timeline."""
    limits = limits or VideoLimits()
    follower = FaceFollower(pipeline, tracking or TrackingConfig())
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _open(source, name, limits) as container:
        info = _check(container, name, limits)
        size = _output_size(info.width, info.height, limits.out_max_side)
        expected = info.frames or max(1, round(info.duration_s * info.fps))
        task = pipeline.task
        result = VideoResult(out_path, info, 0, info.fps, "", task.class_names)
        with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream, result.encoder = _add_stream(out, info.fps, size)
            first_time = None
            try:
                for i, frame in enumerate(container.decode(video=0)):
                    if i >= limits.max_frames:
                        raise VideoError(f"{name}: more than {limits.max_frames} frames; the limit is "
                                         f"{limits.max_frames} (cut it shorter first)")
                    t = frame.time if frame.time is not None else i / info.fps
                    first_time = t if first_time is None else first_time
                    if t - first_time > limits.max_seconds + 1:
                        raise VideoError(f"{name}: the video lasts over {limits.max_seconds:.0f} s, the limit")
                    rgb = frame.to_ndarray(format="rgb24")
                    if rgb.shape[1::-1] != size:
                        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                    faces = follower(rgb, t)
                    draw_faces(rgb, [f.face for f in faces])
                    for f in faces:
                        result.timeline.append(_row(i, t - first_time, f.track, f.face))
                    new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    new.pts, new.time_base = i, Fraction(1) / stream.codec_context.framerate
                    for packet in stream.encode(new.reformat(format="yuv420p")):
                        out.mux(packet)
                    result.frames = i + 1
                    if progress and (i % 5 == 0):
                        progress(min(1.0, (i + 1) / expected), f"frame {i + 1} of ~{expected}")
            except av.FFmpegError as exc:
                if result.frames == 0:
                    raise VideoError(f"{name}: the video cannot be decoded ({_reason(exc)})") from None
                result.warning = (f"{name}: the video is damaged after frame {result.frames}; "
                                  f"the first {result.frames} frames were annotated")
            if result.frames == 0:
                raise VideoError(f"{name}: the video has no frames that can be decoded")
            for packet in stream.encode(None):
                out.mux(packet)
    if progress:
        progress(1.0, f"{result.frames} frames")
    return result


def _row(frame: int, t: float, track: int, face) -> dict:
    x, y, w, h = face.box
    row = {"frame": frame, "time": round(t, 3), "face": track, "label": face.label,
           "probability": round(face.score, 4), "x": x, "y": y, "width": w, "height": h}
    row.update({f"p_{c}": round(float(p), 4) for c, p in zip(face.task.class_names, face.probs)})
    return row
