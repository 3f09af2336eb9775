"""Evaluate a model folder on a dataset:
`python -m training.evaluate --model models/smile --data <dir> [--split test] [--faces auto|detect|cropped|whole] --json out.json`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from core.decision import decision_options, own_offsets
from core.fileio import write_json_atomic
from core.model import Classifier, ModelError, ModelMeta
from core.portable import portable_path
from core.progress import ProgressBar
from core.runtime import quiet_command
from training.faces import FACE_MODES
from training.metrics import classification_report

SPLIT_CHOICES = ("test", "val", "train", "all", "private_test", "public_test")


def evaluate_arrays(clf: Classifier, x: np.ndarray, y: np.ndarray, threshold: float | None = None,
                    predictions: bool = False, second: tuple[np.ndarray, np.ndarray] | None = None,
                    class_bias: tuple[float, ...] | None = None) -> dict:
    """Figures for crops `x` with labels `y`, through the same call the app uses (and, with
    `predictions`, each face's decided class under the key "predictions"). `second` = (crops, mask):
    where the mask is set, a second view of the face whose probabilities are averaged in. `threshold`,
    `class_bias`: a decision rule other than the model's own."""
    from core.pipeline import decide

    t0 = time.perf_counter()
    probs = clf.predict(x, class_bias=class_bias)
    if second is not None and second[1].any():
        mask = second[1]
        probs[mask] = (probs[mask] + clf.predict(second[0][mask], class_bias=class_bias)) / 2
    ms = (time.perf_counter() - t0) * 1000 / max(1, len(x))
    pred = decide(probs, clf.task, clf.meta.threshold if threshold is None else threshold)
    out = classification_report(np.asarray(y), probs, list(clf.task.class_names), pred)
    out.update(n_images=int(len(y)), classify_ms_per_face=round(ms, 3), tta_flip=clf.meta.tta_flip,
               tta_crops=len(clf.crops), model_runs_per_face=clf.n_views)
    if predictions:
        out["predictions"] = np.asarray(pred).tolist()
    return out


def evaluate_dataset(model: str | Path, data: str, split: str = "test", faces: str = "auto",
                     limit: int = 0, crops: bool = True, fer_negatives: float = 0.0,
                     progress: Callable[[int, int], None] | None = None, threshold: float | None = None,
                     offsets: list[str] | None = None) -> dict:
    """Evaluate on a split of a known dataset (the model's seeded split) or a whole class-folder set;
    `crops=False` leaves out the model's extra test-time crops. For a smile model on FER-2013,
    `fer_negatives` (1: all) also counts its other expressions as no-smile faces and reports, per
    expression, how many the model calls smiles. `progress(done, total)` follows the reading of the images.
    `threshold` (binary tasks) or `offsets` (["neutral=0.5"]): a decision rule other than the model's own."""
    from dataclasses import replace

    from core.detect import DetectorConfig
    from training.datasets import is_fer2013, load_dataset
    from training.faces import extract_faces, framed_views
    from training.split import split_indices

    meta = ModelMeta.load(Path(model))
    task = meta.validate()
    if fer_negatives and task.name != "smile":
        raise ValueError("--fer-negatives counts FER-2013's other expressions as no-smile faces: "
                         f"it is for smile models, and {model} is a {task.name} model")
    if not 0 <= fer_negatives <= 1:
        raise ValueError(f"--fer-negatives is a fraction in [0, 1], not {fer_negatives}")
    threshold, class_bias = decision_options(task, meta.class_bias, threshold, offsets or [])
    if fer_negatives and not is_fer2013(data):
        raise ValueError(f"--fer-negatives counts FER-2013's other expressions: {data} is not FER-2013")
    ds = load_dataset(data, task, fer_negatives)   # model and dataset errors come before TensorFlow loads
    clf = Classifier(model, crops=crops, exact=True)
    if ds.name in ("folders",):
        idx = np.arange(len(ds.samples))
        split = "all"
    else:
        idx = split_indices(ds, meta.extra.get("split"), split)
    if limit and len(idx) > limit:
        idx = idx[np.linspace(0, len(idx) - 1, limit).astype(int)]
    # faces only for the chosen samples: a --limit run reads and detects just those images
    part = replace(ds, samples=[ds.samples[i] for i in idx])
    fc = extract_faces(part, clf.preprocess, faces, DetectorConfig(), progress=progress)
    ok = np.flatnonzero(fc.readable)
    if len(ok) == 0:
        raise ValueError(f"no readable images in split '{split}' of {data}")
    framed = framed_views(part, fc, clf.preprocess) if faces == "cropped" else None
    out = evaluate_arrays(clf, fc.x[ok], part.labels[ok], threshold, predictions=bool(fer_negatives),
                          second=None if framed is None else (framed.x[ok], framed.found[ok]), class_bias=class_bias)
    if framed is not None:
        fc = framed   # its `found`: the images that also had a detected face's view
    if fer_negatives:   # FER-2013, checked above
        out["smile_rate_by_expression"] = _smile_rate_by_expression(part, ok, out.pop("predictions"))
    out.update(model=portable_path(model), data=portable_path(data), dataset=ds.name, split=split, faces=faces,
               n_faces_found=int(fc.found[ok].sum()), n_unreadable=int((~fc.readable).sum()),
               skipped_classes=ds.skipped,
               decision={"threshold": clf.meta.threshold if threshold is None else threshold} if task.is_binary
               else {"class_bias": dict(zip(task.class_names, own_offsets(clf.class_bias(class_bias), task.n_classes)))})
    return out


def _smile_rate_by_expression(part, ok: np.ndarray, predicted: list[int]) -> dict:
    """For FER-2013 under the smile task: each expression's faces and the share called smiles."""
    from training.datasets import fer_expression

    names = np.array([fer_expression(part.samples[i]) for i in ok])
    smiles = np.asarray(predicted) == 1
    return {str(n): {"n": int((names == n).sum()), "smile_rate": round(float(smiles[names == n].mean()), 4)}
            for n in sorted(set(names))}


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description="Evaluate a model folder on a dataset's test split (or another split) and "
                                "write accuracy, per-class figures, the confusion matrix and calibration.")
    p.add_argument("--model", default="models/smile", help="model or run folder (default: %(default)s)")
    p.add_argument("--data", required=True, help="dataset folder (or fer2013.csv)")
    p.add_argument("--split", default="test", choices=SPLIT_CHOICES,
                   help="test: the official test split, or the held-out part of a dataset without one (FER-2013: "
                        "PublicTest and PrivateTest together); val, train: the parts of the model's own split; "
                        "all: every image (a plain class-folder collection is always read whole; "
                        "default: %(default)s)")
    p.add_argument("--faces", default="auto", choices=FACE_MODES,
                   help="how each image becomes a face (see the README): auto, detect, cropped or whole")
    p.add_argument("--limit", type=int, default=0, help="evaluate an evenly spaced subset of this size")
    p.add_argument("--no-crops", action="store_true", help="leave out the model's extra test-time crops")
    p.add_argument("--fer-negatives", type=float, default=0.0,
                   help="smile model on FER-2013: also count this fraction (1: all) of its angry, disgust, fear, "
                        "sad and surprise faces as no-smile faces, and report each expression's smile rate")
    p.add_argument("--threshold", type=float, help="smile probability above which a face smiles "
                   "(binary tasks; default: the model's own)")
    p.add_argument("--offset", action="append", default=[], metavar="CLASS=VALUE",
                   help="set a class's offset on the log-probabilities (tasks that pick the likeliest class; "
                        "repeatable; e.g. neutral=0.5; default: the model's own)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    args = p.parse_args(argv)
    bar = ProgressBar("reading faces")
    try:
        out = evaluate_dataset(args.model, args.data, args.split, args.faces, args.limit, not args.no_crops,
                               args.fer_negatives, bar, args.threshold, args.offset)
    except (ModelError, ValueError, FileNotFoundError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    if args.json:
        write_json_atomic(args.json, out)
    brief = {k: out[k] for k in ("accuracy", "balanced_accuracy", "n_images", "n_faces_found")}
    brief["ece"] = out["reliability"].get("ece")
    print(json.dumps(brief, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
