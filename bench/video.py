"""The video path (tracking and its detection schedule) against the still-frame pipeline, frame by
frame and interleaved: `python -m bench --video FILE` and `python -m bench --frames synthetic`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import FRAME_H, FRAME_W, Stopwatch, letterbox, summarize
from core.detect import LIVE_DETECTOR, Box, DetectorConfig, FaceDetector
from core.model import Classifier
from core.pipeline import Pipeline
from core.tracking import FaceFollower, TrackingConfig, iou

VIDEO_FPS = 15.0   # frames are given times as a 15 fps camera would (the webcam page's rate)


def video_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video file, letterboxed into 640x480 RGB."""
    import av

    with av.open(str(path)) as container:
        return [letterbox(f.to_ndarray(format="rgb24"), FRAME_W, FRAME_H) for f in container.decode(video=0)]


def _agreement(tracked: list, still: list) -> tuple[int, int]:
    """(faces of the still-frame pipeline matched by a tracked face with the same label, faces matched);
    `tracked`: Face objects."""
    same = matched = 0
    for face in still:
        best = max(tracked, key=lambda t: iou(t.box, face.box), default=None)
        if best is not None and iou(best.box, face.box) >= 0.3:
            matched += 1
            same += best.index == face.index
    return same, matched


def compare(clf: Classifier, frames: list[np.ndarray], truth: list[list[Box]] | None = None,
            passes: int = 1, detector: DetectorConfig | None = None,
            tracking: TrackingConfig | None = None) -> dict:
    """Per-frame milliseconds of the video path and of the still-frame pipeline (interleaved, `passes`
    times over the frames, tracks restarted each pass), faces found, and label agreement.
    `truth`: the true face boxes of each frame (a face counts as found when a box overlaps it 0.3)."""
    det = FaceDetector(detector or LIVE_DETECTOR)
    still = Pipeline(clf, det)
    watch = Stopwatch("tracked", "still")
    ms, cpu = watch.ms, watch.cpu
    searches: dict[str, int] = {}
    found = {"tracked": 0, "still": 0}
    same = matched = raw_same = 0
    for p in range(passes):
        follower = FaceFollower(Pipeline(clf, det), tracking or TrackingConfig())
        for i, frame in enumerate(frames):
            tracked = watch("tracked", lambda: follower(frame, t=i / VIDEO_FPS))
            faces = watch("still", lambda: still(frame))
            if p:
                continue
            searches[follower.search] = searches.get(follower.search, 0) + 1
            a, b = _agreement([t.face for t in tracked], faces)
            same, matched = same + a, matched + b
            raw_same += _agreement(follower.raw, faces)[0]
            boxes = {"tracked": [t.face.box for t in tracked], "still": [f.box for f in faces]}
            for k, got in boxes.items():
                want = truth[i] if truth is not None else None
                found[k] += (all(any(iou(w, g) >= 0.3 for g in got) for w in want) if want is not None
                             else bool(got))
    n = len(frames)
    return {
        "frames": n, "passes": passes,
        "tracked_ms": summarize(ms["tracked"]), "still_ms": summarize(ms["still"]),
        "tracked_cpu_ms_mean": round(float(np.mean(cpu["tracked"])), 3),
        "still_cpu_ms_mean": round(float(np.mean(cpu["still"])), 3),
        "speedup_mean": round(float(np.mean(ms["still"]) / np.mean(ms["tracked"])), 2),
        "found_share": {k: round(v / n, 4) for k, v in found.items()},
        "found_means": "every true face overlapped by a box" if truth is not None else "at least one face",
        "searches": searches,
        "label_agreement": round(same / matched, 4) if matched else None,
        "label_agreement_faces": matched,
        # the labels of the tracked boxes before smoothing: how far the tracked crops alone change labels
        "label_agreement_unsmoothed": round(raw_same / matched, 4) if matched else None,
    }


def synthetic(genki: str | Path, frames: int = 200, seed: int = 0) -> tuple[list[np.ndarray], list[list[Box]]]:
    """The seeded synthetic frames of bench.synthetic (GENKI-4K faces, 60-200 px) and their true boxes."""
    from bench.synthetic import SyntheticConfig, face_photos, synthetic_frames

    cfg = SyntheticConfig(frames=frames, seed=seed)
    photos = face_photos(genki, -(-frames // cfg.clip_frames), seed)
    pairs = list(synthetic_frames(photos, cfg))
    return [f for f, _ in pairs], [b for _, b in pairs]


def summary(r: dict, name: str) -> str:
    """Lines for people."""
    t, s = r["tracked_ms"], r["still_ms"]
    agree = "-" if r["label_agreement"] is None else \
        f"{r['label_agreement']:.2%} (before smoothing {r['label_agreement_unsmoothed']:.2%})"
    return (f"{name}: {r['frames']} frames x {r['passes']}: tracked mean {t['mean']:.1f} ms, median {t['median']:.1f}, "
            f"p95 {t['p95']:.1f} (still-frame pipeline mean {s['mean']:.1f}, median {s['median']:.1f}); faces found "
            f"in {r['found_share']['tracked']:.1%} of frames (still {r['found_share']['still']:.1%}); label agreement "
            f"with the still-frame pipeline {agree} of {r['label_agreement_faces']} faces; searches {r['searches']}")
