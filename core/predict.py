"""Label the faces in image and video files:
`python -m core.predict <image or video files...> [--model models/smile] [--task smile|expression] [--json]
[--threshold T] [--offset CLASS=V] [--calm FILE] [--annotate OUTDIR] [--explain OUTDIR]`.

A video's every frame goes through the tracked pipeline the Upload page uses; each face is summed up as
the share of frames under each label and its stretches of one label (`--json`: every frame's row too).
`--calm` calibrates the rule to one person's calm face first (`core.calibrate`, as the Webcam page's button does).

Exit status: 0 when every file was read (with or without faces), 1 when any file could not be
read (each gets its own error line; the others are still processed), 2 for a bad model or option.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.calibrate import (Calibration, CalibrationConfig, calibrate, calibrate_to_photo, calibrated,
                             rule_in_use, spread)
from core.decision import decision_options, own_offsets
from core.detect import FaceDetector
from core.imageio import ImageError, encode_png, load_image
from core.model import Classifier, ModelError, ModelMeta
from core.pipeline import Face, Pipeline
from core.predict_video import format_video, is_video, predict_video
from core.registry import models_root
from core.runtime import quiet_command
from core.tasks import TASKS


@dataclass
class ImageResult:
    file: str
    width: int = 0
    height: int = 0
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    annotated: str | None = None
    explanations: list[dict] = field(default_factory=list)   # with --explain: one per face

    def as_dict(self) -> dict:
        faces = [f.as_row() for f in self.faces]
        for row, why in zip(faces, self.explanations):
            row["explanation"] = why
        return {"file": self.file, "width": self.width, "height": self.height,
                "faces": faces, "error": self.error, "annotated": self.annotated}


def predict_file(pipeline: Pipeline, path: str, annotate: Path | None = None,
                 taken: set[Path] | None = None, explain: tuple | None = None) -> ImageResult:
    """Faces of one image file; a file that cannot be read gives a result with `error` set.
    With `annotate`, the labelled picture is written there as <stem>.png (not over one in `taken`).
    With `explain` = (Explainer, folder, method), each face's crop and heat map go there as <stem>-face<k>.png."""
    result = ImageResult(path)
    try:
        image = load_image(path, name=path)
    except ImageError as exc:
        result.error = str(exc)
        return result
    result.height, result.width = image.shape[:2]
    result.faces = pipeline(image, thorough=True)   # a photo: a deeper search if the first finds none
    if explain is not None:   # before annotating, which draws on the image
        _explain(result, image, *explain, taken if taken is not None else set())
    if annotate is not None:
        from core.draw import draw_faces

        out = _free_name(annotate, Path(path).stem, taken if taken is not None else set())
        out.write_bytes(encode_png(draw_faces(image, result.faces)))
        result.annotated = str(out)
    return result


def calm_face_probs(pipeline: Pipeline, path: str) -> np.ndarray:
    """The probabilities (frames, classes) of the face followed through the most frames of a video;
    ModelError with the reason where there is none."""
    video = predict_video(pipeline, path)
    if video.error:
        raise ModelError(f"--calm: {video.error}")
    tracks: dict[int, list[dict]] = {}
    for row in video.timeline:
        tracks.setdefault(row["face"], []).append(row)
    if not tracks:
        raise ModelError(f"--calm: no face in {path}")
    rows = max(tracks.values(), key=len)
    return np.array([[row[f"p_{c}"] for c in pipeline.task.class_names] for row in rows])


def calibrate_to_file(pipeline: Pipeline, path: str,
                      config: CalibrationConfig = CalibrationConfig()) -> tuple[Pipeline, Calibration]:
    """The pipeline calibrated to the calm face in a photo or video, and the calibration; ModelError when the
    file cannot be read or shows no face, a face that changes, or a real expression."""
    if is_video(path):
        probs = calm_face_probs(pipeline, path)
        if len(probs) > 1 and spread(probs) > config.steady:
            raise ModelError(f"--calm: the face changes in {path}: give a photo, or a stretch of video, of a calm face")
        result = calibrate(probs, pipeline.task, rule_in_use(pipeline)[0], config)
    else:
        try:
            image = load_image(path, name=path)
        except ImageError as exc:
            raise ModelError(f"--calm: {exc}") from None
        result = calibrate_to_photo(pipeline, image, config)
    if result.status == "refused":
        raise ModelError(f"--calm: {result.message}")
    return calibrated(pipeline, result), result


def _explain(result: ImageResult, image, explainer, folder: Path, method: str, taken: set[Path]) -> None:
    """Write each face's crop and heat map side by side, and keep its explanation's JSON."""
    from core.explain import explain_faces, explanation_row, side_by_side

    faces = result.faces
    found = explain_faces(explainer, image, [f.box for f in faces], [f.index for f in faces], method)
    for k, fe in enumerate(found, 1):
        out = _free_name(folder, f"{Path(result.file).stem}-face{k}", taken)
        out.write_bytes(encode_png(side_by_side(fe.crop, fe.explanation.heat)))
        result.explanations.append(explanation_row(fe.explanation, explainer.classifier.task, str(out)))


def _free_name(folder: Path, stem: str, taken: set[Path], suffix: str = ".png") -> Path:
    """folder/stem.png, or stem-2.png, stem-3.png... when this run already wrote that name
    (inputs from several folders); marks the name taken."""
    out, k = folder / f"{stem}{suffix}", 1
    while out in taken:
        k += 1
        out = folder / f"{stem}-{k}{suffix}"
    taken.add(out)
    return out


def format_table(result: ImageResult) -> str:
    """Human-readable lines for one image."""
    if result.error:
        return f"{result.file}: error: {result.error}"
    head = f"{result.file} ({result.width}x{result.height}): "
    if not result.faces:
        return head + "no face found"
    lines = [head + f"{len(result.faces)} face{'s' if len(result.faces) > 1 else ''}"]
    lines.append(f"  {'#':>2}  {'x':>5} {'y':>5} {'w':>5} {'h':>5}  {'label':<10} {'prob':>6}  all classes")
    for i, f in enumerate(result.faces, 1):
        x, y, w, h = f.box
        probs = " ".join(f"{n}={p:.2f}" for n, p in zip(f.task.display_names, f.probs))
        lines.append(f"  {i:>2}  {x:>5} {y:>5} {w:>5} {h:>5}  {f.label:<10} {f.score:>6.1%}  {probs}")
        if i <= len(result.explanations):
            why = result.explanations[i - 1]
            share = "no evidence" if why["mouth_share"] is None else f"{why['mouth_share']:.0%} on the mouth"
            lines.append(f"      why: {why['file']} ({why['method']}, {share})")
    if result.annotated:
        lines.append(f"  annotated: {result.annotated}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP, WebP...) or videos (MP4, MOV, AVI, "
                   "MKV, WebM; every frame, faces followed from frame to frame)")
    p.add_argument("--model", help="model folder (default: models/<task>)")
    p.add_argument("--task", choices=sorted(TASKS), help="task (default: the model's, else smile)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--threshold", type=float, help="smile probability above which a face smiles "
                   "(binary tasks; default: the model's own)")
    p.add_argument("--offset", action="append", default=[], metavar="CLASS=VALUE",
                   help="set a class's offset on the log-probabilities (tasks that pick the likeliest class; "
                        "repeatable; e.g. neutral=0.4 reads more calm faces as neutral; default: the model's own)")
    p.add_argument("--calm", metavar="FILE", help="a photo or video of the person's calm face: the rule is first "
                   "calibrated to it (the threshold rises, or the classes that face leans to get lower offsets, just "
                   "far enough that it reads calm), then used for every input")
    p.add_argument("--no-crops", action="store_true", help="leave out the model's extra test-time crops (faster)")
    p.add_argument("--annotate", metavar="OUTDIR", help="also write each image (PNG) or video (MP4) with boxes and "
                   "labels here")
    p.add_argument("--explain", metavar="OUTDIR", help="write each image's face crops and heat maps (what the label rests "
                   "on) here, and add each face's `explanation` (the file, the share of the map on the mouth) to the JSON")
    p.add_argument("--explain-method", choices=("grad-cam", "occlusion"), default="occlusion",
                   help="how the heat map is made: occlusion (hide each part, measure the loss; the default, as on "
                        "GENKI-4K it puts the smile model's evidence on the mouth) or grad-cam (faster, coarser)")
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    return p.parse_args(argv)


def load_pipeline(args: argparse.Namespace) -> Pipeline:
    """The pipeline the options ask for; ModelError with the reason otherwise (checked before
    TensorFlow loads, so mistakes are reported at once)."""
    folder = Path(args.model) if args.model else models_root() / (args.task or "smile")
    meta = ModelMeta.load(folder)
    task = meta.validate()
    if args.task and task.name != args.task:
        raise ModelError(f"{folder} is a '{task.name}' model, not a '{args.task}' model")
    try:
        threshold, bias = decision_options(task, meta.class_bias, args.threshold, args.offset)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return Pipeline(Classifier(folder, warm_up=False, crops=not args.no_crops), FaceDetector(), threshold, bias)


def _explainer(pipeline: Pipeline, args: argparse.Namespace) -> tuple | None:
    """(Explainer, folder, method) for --explain, else None; ModelError if the model cannot be explained."""
    if not args.explain:
        return None
    from core.explain import Explainer

    try:
        return Explainer(pipeline.classifier, warm_up=False), Path(args.explain), args.explain_method
    except ValueError as exc:
        raise ModelError(f"--explain: {exc}") from None


def main(argv=None) -> int:
    quiet_command(argv)
    args = parse_args(argv)
    annotate = None
    if args.annotate:
        annotate = Path(args.annotate)
        try:
            annotate.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"error: cannot create {annotate}: {exc.strerror}", file=sys.stderr)
            return 2
    if args.explain:
        try:
            Path(args.explain).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"error: cannot create {args.explain}: {exc.strerror}", file=sys.stderr)
            return 2
    calibration = None
    try:
        pipeline = load_pipeline(args)
        if args.calm:
            pipeline, calibration = calibrate_to_file(pipeline, args.calm)
            print(f"calm face {args.calm}: {calibration.message}", file=sys.stderr, flush=True)
        explain = _explainer(pipeline, args)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results, taken = [], set()
    for path in args.images:
        if is_video(path):
            out = _free_name(annotate, Path(path).stem, taken, ".mp4") if annotate else None
            r, show = predict_video(pipeline, path, out), format_video
        else:
            r, show = predict_file(pipeline, path, annotate, taken, explain), format_table
        results.append(r)
        if r.error:
            print(f"error: {r.error}", file=sys.stderr, flush=True)
        elif not args.json:
            print(show(r), flush=True)
    if args.json:
        clf = pipeline.classifier
        threshold = rule_in_use(pipeline)[0]
        calm = None if calibration is None else {
            "file": args.calm, "status": calibration.status, "message": calibration.message,
            "threshold": calibration.threshold, "changes": calibration.changes}
        print(json.dumps({"model": str(clf.folder), "task": clf.task.name,
                          "threshold": threshold if threshold is not None else clf.meta.threshold,
                          "class_bias": own_offsets(clf.class_bias(pipeline.class_bias), clf.task.n_classes),
                          "calibration": calm, "images": [r.as_dict() for r in results]}, indent=2))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
