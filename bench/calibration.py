"""What calibration to a calm face (the Webcam page's button, `core.calibrate`) does for the faces that need it:

`python -m bench.calibration [--task expression | --model M] [--genki <genki4k>] [--media ../shared/media]
[--split test|val] [--limit N] [--json out.json]`

Each calm (non-smiling) face of GENKI-4K's test split that the live pipeline does not read calm (expression:
neutral; smile: no smile) becomes two short webcam streams of the photo held still (a pixel or two of sway, a
flicker of light, sensor noise; different seeds). Calibration reads the first stream as the page does; the second,
read under the calibrated rule, says how often the face then reads calm. What it costs is read on faces that are
not calm, under each rule calibration chose: the smiling frames of `smile_video.mp4` and, for an expression model,
the seven posed photos in `../shared/media/expressions`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.fileio import write_json_atomic
from core.portable import portable_command, portable_path
from core.runtime import quiet_command

FPS = 15.0
FRAMES = 45                       # three seconds a stream
SMILE_FRAMES = slice(26, 61)      # smile_video.mp4's smiling frames (../shared/media/README.md)


def webcam_frames(photo: np.ndarray, n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` 640x480 frames of a still face photo, as a webcam shows one: enlarged, a pixel or two of sway,
    a flicker of light and sensor noise in each frame."""
    import cv2

    rng = np.random.default_rng(seed)
    face = cv2.resize(photo, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    h, w = face.shape[:2]
    frames = []
    for _ in range(n):
        canvas = np.full((480, 640, 3), 110, np.float32)
        dx, dy = rng.integers(-2, 3, size=2)
        y, x = max(0, (480 - h) // 2 + dy), max(0, (640 - w) // 2 + dx)
        part = face[:480 - y, :640 - x]
        canvas[y:y + part.shape[0], x:x + part.shape[1]] = part * rng.uniform(0.97, 1.03)
        canvas += rng.normal(0, 2.0, canvas.shape)
        frames.append(np.clip(canvas, 0, 255).astype(np.uint8))
    return frames


def stream(pipeline, frames: list[np.ndarray], start: float = 0.0) -> list:
    """The label records of `frames` streamed at FPS through a fresh frame processor."""
    from core.stream import FrameProcessor

    processor = FrameProcessor(pipeline)
    for i, frame in enumerate(frames):
        t = start + i / FPS
        processor.process(frame, now=t, source_t=t)
    return list(processor.stats().records)


def run_calibration(calibration, records: list) -> tuple:
    """Feed the records one by one, as the page's refreshes would; (the Calibration or None, frames used)."""
    for i in range(1, len(records) + 1):
        result = calibration.update(records[:i], now=calibration.started + i / FPS)
        if result is not None:
            return result, i
    return None, len(records)


def shown(records: list) -> list[str]:
    """The label shown on the largest face of each frame that has one."""
    return [r.labels[0] for r in records if r.labels]


def _share(labels: list[str], name: str) -> float:
    return labels.count(name) / len(labels) if labels else 0.0


class Costs:
    """What a rule does to faces that are not calm: the share of smile_video's smiling frames read as a
    smile (happy), and for an expression model which of the seven posed photos read right."""

    def __init__(self, media: Path | None):
        import av

        from bench.generalisation import MEDIA_CLASSES
        from core.imageio import load_image

        self.frames, self.photos = [], []
        if media is not None and (media / "smile_video.mp4").is_file():
            with av.open(str(media / "smile_video.mp4")) as container:
                self.frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][SMILE_FRAMES]
        if media is not None:
            self.photos = [(p.stem, load_image(p), MEDIA_CLASSES.get(p.stem, p.stem))
                           for p in sorted((media / "expressions").glob("*.jpg"))]

    def __call__(self, pipeline) -> dict:
        out: dict = {}
        smiling = "smile" if pipeline.task.is_binary else "happy"
        if self.frames:
            out["smile_frames_read_smiling"] = round(_share(shown(stream(pipeline, self.frames)), smiling), 4)
        if self.photos and not pipeline.task.is_binary:
            right = []
            for stem, image, truth in self.photos:
                faces = pipeline(image, thorough=True)
                if faces and faces[0].index == pipeline.task.class_index(truth):
                    right.append(stem)
            out["posed_right"] = right
        return out


def found_calm_faces(pipeline, collection):
    """(index, RGB photo, the pipeline's face) for each calm face of a GENKI-4K collection (its non-smiles)
    that the pipeline finds alone in its photo."""
    from core.calibrate import calm_class

    calm = calm_class(pipeline.task)
    for i in np.flatnonzero(collection.labels == calm):
        photo = collection.load(int(i))
        if photo.ndim == 2:
            photo = np.repeat(photo[:, :, None], 3, axis=2)
        found = pipeline(photo)
        if len(found) == 1:
            yield int(i), photo, found[0]


def leaning_calm_face(pipeline, genki: str | Path, leaning: tuple[str, ...] = ("angry", "sad", "fear"),
                      lead: tuple[float, float] = (0.15, 0.35)):
    """The first calm face of GENKI-4K's test split that an expression pipeline reads as one of `leaning` with
    neutral second, ahead of it by `lead` (from, to) in probability: misread firmly enough that a stream never
    flickers to neutral, not so far that calibration would take it for a real expression. An RGB photo, or None."""
    from bench.generalisation import genki_collection

    col = genki_collection(str(genki), pipeline.task, None, "test")
    neutral = pipeline.task.class_index("neutral")
    for _, photo, face in found_calm_faces(pipeline, col):
        if (face.label in leaning and int(np.argsort(face.probs)[-2]) == neutral
                and lead[0] <= face.score - face.probs[neutral] <= lead[1]):
            return photo
    return None


def run(model: str | Path, genki: str, media: str | None = None, limit: int = 0, split: str = "test",
        log=lambda m: None) -> dict:
    """Calibration on every calm face of GENKI-4K's `split` (test, or val: the model's validation part) that the
    live pipeline does not read calm (the first `limit` of them)."""
    from bench.generalisation import genki_collection, trained_families
    from core.calibrate import CalmFaceCalibration, calibrated, calm_class
    from core.detect import LIVE_DETECTOR, FaceDetector
    from core.model import Classifier
    from core.pipeline import Pipeline

    clf = Classifier(model)
    task = clf.task
    split_cfg = clf.meta.extra.get("split") if "genki4k" in trained_families(clf.meta) else None
    col = genki_collection(genki, task, split_cfg, split)
    calm = calm_class(task)
    pipeline = Pipeline(clf, FaceDetector(LIVE_DETECTOR))
    calm_name = task.display_names[calm]
    costs = Costs(Path(media) if media and Path(media).is_dir() else None)
    faces, n_calm = [], 0
    for i, photo, face in found_calm_faces(pipeline, col):
        n_calm += 1
        if face.index == calm:
            continue
        before = stream(pipeline, webcam_frames(photo, FRAMES, seed=2 * i))
        result, used = run_calibration(CalmFaceCalibration.for_pipeline(pipeline, started=0.0), before)
        row = {"photo": i, "read_as": face.label, "calm_before": round(_share(shown(before), calm_name), 4),
               "status": result.status if result else "undecided", "frames_used": used}
        if result is not None and result.changed:
            rule = calibrated(pipeline, result)
            row["rule"] = result.threshold if task.is_binary else result.changes
            after = stream(rule, webcam_frames(photo, FRAMES, seed=2 * i + 1))
            row["calm_after"] = round(_share(shown(after), calm_name), 4)
            row.update(costs(rule))
        faces.append(row)
        log(f"{len(faces)}: photo {i} read {row['read_as']}: {row['status']} {row.get('rule', '')} "
            f"calm {row['calm_before']:.0%} -> {row.get('calm_after', row['calm_before']):.0%}")
        if limit and len(faces) >= limit:
            break
    done = [f for f in faces if f["status"] == "calibrated"]

    def mean(key, of=lambda v: v):
        vals = [of(f[key]) for f in done if key in f]
        return round(float(np.mean(vals)), 4) if vals else None

    summary = {
        "calm_faces": n_calm, "read_not_calm": len(faces),
        "calibrated": len(done), "unchanged": sum(f["status"] == "unchanged" for f in faces),
        "refused": sum(f["status"] == "refused" for f in faces),
        "undecided": sum(f["status"] == "undecided" for f in faces),
        "calm_before_mean": round(float(np.mean([f["calm_before"] for f in faces])), 4) if faces else None,
        "calm_after_mean": mean("calm_after"),
        "calibrated_reading_calm_90pct": mean("calm_after", lambda v: v >= 0.9),
        "smile_frames_read_smiling_mean": mean("smile_frames_read_smiling"),
        "posed_right_mean": mean("posed_right", len),
    }
    if task.is_binary and done:
        summary["threshold_median"] = float(np.median([f["rule"] for f in done]))
    model_costs = costs(pipeline)
    return {"model": portable_path(model), "task": task.name, "calm_class": calm_name, "split": split,
            "summary": summary, "model_rule": model_costs, "faces": faces}


def format_summary(result: dict) -> str:
    s = result["summary"]
    name = result["calm_class"]
    lines = [f"{result['model']}: {s['calm_faces']} calm GENKI-4K {result['split']} faces, {s['read_not_calm']} not "
             f"read {name} by the live pipeline",
             f"  calibrated {s['calibrated']}, unchanged {s['unchanged']}, refused {s['refused']}, "
             f"undecided {s['undecided']}"]
    if s["calibrated"]:
        lines.append(f"  read {name}: {s['calm_before_mean']:.0%} of frames before, {s['calm_after_mean']:.0%} after "
                     f"(calibrated faces); {s['calibrated_reading_calm_90pct']:.0%} of them in 90 % of frames or more")
        if "threshold_median" in s:
            lines.append(f"  threshold: calibrated median {s['threshold_median']:g}")
    model = result["model_rule"]
    if "smile_frames_read_smiling" in model:
        lines.append(f"  smile_video's smiling frames read smiling: {model['smile_frames_read_smiling']:.0%} under the "
                     f"model's rule, {s['smile_frames_read_smiling_mean']:.0%} on average under the calibrated ones"
                     if s["calibrated"] else "")
    if "posed_right" in model:
        lines.append(f"  posed photos read right: {len(model['posed_right'])}/7 under the model's rule"
                     + (f", {s['posed_right_mean']:.2f} on average under the calibrated ones" if s["calibrated"] else ""))
    return "\n".join(line for line in lines if line)


def main(argv=None) -> int:
    quiet_command(argv)
    from bench.generalisation import add_collection_arguments, add_model_arguments, chosen_model

    p = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__.splitlines()[0])
    add_model_arguments(p, "expression")
    p.add_argument("--limit", type=int, default=0, help="at most this many faces that need calibration (0: all)")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="GENKI-4K's test split, or the validation part (the figures to choose settings by)")
    p.add_argument("--json", help="write the figures here")
    add_collection_arguments(p)
    args = p.parse_args(argv)
    if args.limit < 0:
        print("error: --limit is a count of faces, 0 or more", file=sys.stderr)
        return 2
    if not Path(args.genki).is_dir():
        print(f"error: no GENKI-4K at {args.genki}: give --genki", file=sys.stderr)
        return 2
    from core.model import ModelError

    try:
        result = run(chosen_model(args), args.genki, args.media, args.limit, args.split,
                     log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["command"] = portable_command(["python", "-m", "bench.calibration",
                                          *(argv if argv is not None else sys.argv[1:])])
    print(format_summary(result))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
