"""A prior correction for an expression model: per-class offsets added to its log-probabilities, chosen so
that the worse of two collections' balanced accuracies is as high as possible:

`python -m training.prior --model models/expression --fer <fer2013> --genki <genki4k> --out <new model folder>`

The two collections: FER-2013's PublicTest faces (the challenge's own validation split; PrivateTest stays
unread) and a subset of GENKI-4K's training-split photos, whose smiles should read happy and whose other
faces neutral (no Grin expression model trains on GENKI-4K, and its test split is left to the suite). A
network trained on FER-2013's class balance over-calls angry, sad and fear on the calm faces of other
collections; the offsets move those decisions without retraining. The new folder holds the same network
with `class_bias` in its metadata, which every prediction applies (`core.model.apply_class_bias`).

A gentler correction moves only named classes and keeps PublicTest's accuracy close to the network's own:
`... --classes neutral --max-drop 0.005 --aim mean --step 0.1`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.portable import portable_command
from core.runtime import quiet_command

GRID_STEP = 0.25    # offsets tried: -1.5 to 1.5 in these steps
GENKI_EVERY = 3     # every 3rd GENKI-4K training photo
FIGURES = ("eval_", "generalisation", "bench", "explain", "offset_curve")   # files of figures that a correction changes


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y`."""
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def objective(sets: list[tuple[np.ndarray, np.ndarray]], bias: np.ndarray,
              order: str = "worst") -> tuple[float, float]:
    """(worst, mean) balanced accuracy over (log-probabilities, labels) sets under `bias`;
    (mean, worst) when `order` is "mean", so that tuples compare by the chosen aim first."""
    scores = [balanced_accuracy(y, np.argmax(logp + bias, axis=1)) for logp, y in sets]
    worst, mean = min(scores), float(np.mean(scores))
    return (mean, worst) if order == "mean" else (worst, mean)


def accuracy(logp: np.ndarray, y: np.ndarray, bias: np.ndarray) -> float:
    return float((np.argmax(logp + bias, axis=1) == y).mean())


def grid(step: float = GRID_STEP) -> np.ndarray:
    return np.round(np.arange(-1.5, 1.5 + step / 2, step), 3)


def fit_bias(sets: list[tuple[np.ndarray, np.ndarray]], n_classes: int, rounds: int = 3,
             classes: list[int] | None = None, max_drop: float | None = None, order: str = "worst",
             step: float = GRID_STEP) -> np.ndarray:
    """Coordinate ascent over a grid of offsets per class, maximising (worst, mean) balanced accuracy
    (`order` "mean": mean first); sets are (probabilities, labels). `classes`: only these offsets move.
    `max_drop`: no offsets that cost the first set more than this much plain accuracy."""
    logs = [(np.log(np.maximum(p, 1e-7)), y) for p, y in sets]
    bias = np.zeros(n_classes)
    floor = -np.inf if max_drop is None else accuracy(*logs[0], bias) - max_drop - 1e-9
    best = objective(logs, bias, order)
    for _ in range(rounds):
        moved = False
        for k in (range(n_classes) if classes is None else classes):
            for v in grid(step):
                trial = bias.copy()
                trial[k] = v
                if accuracy(*logs[0], trial) < floor:
                    continue
                score = objective(logs, trial, order)
                if score > best:
                    best, bias, moved = score, trial, True
        if not moved:
            break
    return bias


def uncorrected(model: str | Path):
    """An expression model's Classifier in float32, without its prior correction (the network's own
    probabilities); ValueError for a model of another task."""
    from core.model import Classifier

    clf = Classifier(model, exact=True)
    clf.meta = replace(clf.meta, class_bias=[])
    if "happy" not in clf.task.class_names:
        raise ValueError(f"{model}: a prior correction is fitted for an expression model")
    return clf


def fitting_collections(fer: str, genki: str, task) -> tuple:
    """FER-2013's PublicTest and every GENKI_EVERY-th GENKI-4K training photo, as suite collections."""
    from bench.generalisation import fer_collections, genki_collection

    public = next((c for c in fer_collections(fer, task) if c.name == "fer2013-public-test"), None)
    if public is None or not len(public.labels):
        raise ValueError(f"{fer}: no FER-2013 PublicTest faces (test/<class>/PublicTest_*.jpg)")
    genki_all = genki_collection(genki, task, None, split="train")
    keep = np.arange(0, len(genki_all.labels), GENKI_EVERY)
    genki_part = replace(genki_all, name="genki4k-train-subset", labels=genki_all.labels[keep],
                         load=lambda i: genki_all.load(int(keep[i])), key=genki_all.key + f"/every{GENKI_EVERY}")
    return public, genki_part


def fitting_sets(model: str | Path, fer: str, genki: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """(probabilities without any prior correction, labels) for FER-2013 PublicTest and the GENKI-4K subset."""
    from bench.generalisation import face_crops
    from core.detect import DetectorConfig, FaceDetector

    clf = uncorrected(model)      # fit on the network's own probabilities
    detector = FaceDetector(DetectorConfig())
    sets, sizes = [], {}
    for col in fitting_collections(fer, genki, clf.task):
        x, _, _ = face_crops(col, "as is", None, clf.preprocess, detector)
        sets.append((clf.predict(x), col.labels))
        sizes[col.name] = int(len(col.labels))
    return sets, sizes


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m training.prior", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("--model", default="models/expression", help="expression model folder (default: %(default)s)")
    p.add_argument("--fer", required=True, help="FER-2013 folder (its PublicTest faces are read)")
    p.add_argument("--genki", required=True, help="GENKI-4K folder (a subset of its training split is read)")
    p.add_argument("--out", required=True, help="new model folder: the same network with the correction")
    p.add_argument("--classes", nargs="+", default=None,
                   help="only these classes' offsets move (default: every class's)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="refuse offsets that cost PublicTest more than this much accuracy (0.005: half a point)")
    p.add_argument("--step", type=float, default=GRID_STEP,
                   help="offsets tried run from -1.5 to 1.5 in these steps (default: %(default)s)")
    p.add_argument("--aim", choices=("worst", "mean"), default="worst",
                   help="maximise the worse of the two balanced accuracies, or their mean (default: %(default)s)")
    args = p.parse_args(argv)
    from core.model import ModelError, ModelMeta

    try:
        if Path(args.out).resolve() == Path(args.model).resolve():
            raise ValueError("--out must be a new folder, not the model itself")
        meta = ModelMeta.load(Path(args.model))
        unknown = sorted(set(args.classes or []) - set(meta.class_names))
        if unknown:
            raise ValueError(f"--classes: {', '.join(unknown)} not among {', '.join(meta.class_names)}")
        if not 0.01 <= args.step <= 1.5:
            raise ValueError(f"--step must be 0.01 to 1.5, not {args.step}")
        if args.max_drop is not None and not 0 <= args.max_drop < 1:
            raise ValueError(f"--max-drop must be a fraction of accuracy in [0, 1), not {args.max_drop}")
        sets, sizes = fitting_sets(args.model, args.fer, args.genki)
        classes = None if args.classes is None else [meta.class_names.index(c) for c in args.classes]
        bias = fit_bias(sets, len(meta.class_names), classes=classes, max_drop=args.max_drop, order=args.aim,
                        step=args.step)
    except (ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs = [(np.log(np.maximum(pr, 1e-7)), y) for pr, y in sets]
    before, after = objective(logs, np.zeros(len(bias)), args.aim), objective(logs, bias, args.aim)
    public_acc = {"before": round(accuracy(*logs[0], np.zeros(len(bias))), 4), "after": round(accuracy(*logs[0], bias), 4)}
    keys = ("mean", "worst") if args.aim == "mean" else ("worst", "mean")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(args.model).iterdir():   # the network and its training records; not the figures of the
        if f.is_file() and f.name != "README.md" and not f.name.startswith(FIGURES):   # uncorrected model
            shutil.copy2(f, out / f.name)
    meta = replace(meta, class_bias=[round(float(b), 2) for b in bias])
    meta.extra = dict(meta.extra, prior_correction={
        "command": portable_command(["python", "-m", "training.prior", *(argv if argv is not None else sys.argv[1:])]),
        "fitted_on": sizes,
        "objective": f"{args.aim} balanced accuracy over the fitted sets, then the other"
                     + ("" if args.max_drop is None else f", PublicTest accuracy at most {args.max_drop} lower"),
        "before": dict(zip(keys, (round(v, 4) for v in before))),
        "after": dict(zip(keys, (round(v, 4) for v in after))), "public_test_accuracy": public_acc})
    meta.save(out)
    print(json.dumps({"class_bias": dict(zip(meta.class_names, meta.class_bias)),
                      "before": before, "after": after, "public_test_accuracy": public_acc,
                      "fitted_on": sizes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
