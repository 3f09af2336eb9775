"""Label the faces of a video file for `python -m core.predict`: every frame through the tracked video
pipeline (as the Upload page does), summed up per face as label shares and stretches of one label."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from core.pipeline import Pipeline
from core.video import VideoError, annotate_video

VIDEO_EXTS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"}
MAX_STRETCHES_SHOWN = 12     # a summary shows a face's first stretches; the JSON has them all


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


@dataclass
class VideoPrediction:
    file: str
    width: int = 0
    height: int = 0
    fps: float = 0.0
    frames: int = 0
    faces: list[dict] = field(default_factory=list)      # per tracked face: frames, label shares, stretches
    timeline: list[dict] = field(default_factory=list)   # one row per face per frame
    error: str | None = None
    warning: str = ""
    annotated: str | None = None

    def as_dict(self) -> dict:
        return {"file": self.file, "kind": "video", "width": self.width, "height": self.height, "fps": self.fps,
                "frames": self.frames, "faces": self.faces, "timeline": self.timeline, "error": self.error,
                "warning": self.warning, "annotated": self.annotated}


def stretches(rows: list[dict]) -> list[dict]:
    """Consecutive frames of one face with the same label, as {label, start, end (s), frames}."""
    out: list[dict] = []
    for r in rows:
        if out and out[-1]["label"] == r["label"] and r["frame"] == out[-1]["last_frame"] + 1:
            out[-1].update(end=r["time"], frames=out[-1]["frames"] + 1, last_frame=r["frame"])
        else:
            out.append({"label": r["label"], "start": r["time"], "end": r["time"], "frames": 1,
                        "last_frame": r["frame"]})
    return [{k: v for k, v in s.items() if k != "last_frame"} for s in out]


def face_summaries(timeline: list[dict]) -> list[dict]:
    """Per tracked face (in order of appearance): frames seen, the share of them under each label, and
    its stretches of one label."""
    tracks: dict[int, list[dict]] = {}
    for row in timeline:
        tracks.setdefault(row["face"], []).append(row)
    out = []
    for track, rows in tracks.items():
        shares: dict[str, int] = {}
        for r in rows:
            shares[r["label"]] = shares.get(r["label"], 0) + 1
        out.append({"face": track, "frames": len(rows),
                    "label_share": {k: round(v / len(rows), 4) for k, v in
                                    sorted(shares.items(), key=lambda kv: -kv[1])},
                    "stretches": stretches(rows)})
    return out


def stretch_text(stretches: list[dict], limit: int = MAX_STRETCHES_SHOWN) -> str:
    """'0.00-0.76 s neutral · 0.80-2.64 s happy …': a face's first `limit` stretches of one label."""
    shown = [f"{s['start']:.2f}-{s['end']:.2f} s {s['label']}" for s in stretches[:limit]]
    more = len(stretches) - limit
    return " · ".join(shown) + (f" · … {more} more" if more > 0 else "")


def share_text(label_share: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in label_share.items())


def predict_video(pipeline: Pipeline, path: str, annotated: Path | None = None) -> VideoPrediction:
    """Faces of every frame of one video file; a file that cannot be used gives a result with `error` set.
    With `annotated`, the labelled video is kept there (an MP4)."""
    result = VideoPrediction(path)
    with tempfile.TemporaryDirectory(prefix="grin-video-") as tmp:
        target = annotated if annotated is not None else Path(tmp) / "out.mp4"
        try:
            video = annotate_video(path, target, pipeline, name=path)
        except VideoError as exc:
            result.error = str(exc)
            return result
        except OSError as exc:
            result.error = f"{path}: {exc.strerror or exc}"
            return result
    result.width, result.height, result.fps = video.info.width, video.info.height, round(video.fps, 3)
    result.frames, result.warning, result.timeline = video.frames, video.warning, video.timeline
    result.faces = face_summaries(video.timeline)
    if annotated is not None:
        result.annotated = str(annotated)
    return result


def format_video(result: VideoPrediction) -> str:
    """Human-readable lines for one video."""
    if result.error:
        return f"{result.file}: error: {result.error}"
    n = len(result.faces)
    lines = [f"{result.file} ({result.width}x{result.height}, {result.fps:g} fps, {result.frames} frames): "
             + (f"{n} face{'s' if n > 1 else ''}" if n else "no face found")]
    for f in result.faces:
        lines.append(f"  face {f['face']}: {f['frames']} frame{'s' if f['frames'] != 1 else ''}; "
                     + share_text(f["label_share"]))
        lines.append("    " + stretch_text(f["stretches"]))
    if result.warning:
        lines.append(f"  warning: {result.warning}")
    if result.annotated:
        lines.append(f"  annotated: {result.annotated}")
    return "\n".join(lines)
