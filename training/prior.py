"""A prior correction for an expression model: per-class offsets added to its log-probabilities, chosen so
that the worse of two collections' balanced accuracies is as high as possible:

`python -m training.prior --model models/expression --fer <fer2013> --genki <genki4k> --out <new model folder>`

The two collections: FER-2013's PublicTest faces (the challenge's own validation split; PrivateTest stays
unread) and a subset of GENKI-4K's training-split photos, whose smiles should read happy and whose other
faces neutral (no Grin expression model trains on GENKI-4K, and its test split is left to the suite). A
network trained on FER-2013's class balance over-calls angry, sad and fear on the calm faces of other
collections; the offsets move those decisions without retraining. The new folder holds the same network
with `class_bias` in its metadata, which every prediction applies (`core.model.apply_class_bias`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

GRID = np.round(np.arange(-1.5, 1.51, 0.25), 2)
GENKI_EVERY = 3     # every 3rd GENKI-4K training photo


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y`."""
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def objective(sets: list[tuple[np.ndarray, np.ndarray]], bias: np.ndarray) -> tuple[float, float]:
    """(worst, mean) balanced accuracy over (log-probabilities, labels) sets under `bias`."""
    scores = [balanced_accuracy(y, np.argmax(logp + bias, axis=1)) for logp, y in sets]
    return min(scores), float(np.mean(scores))


def fit_bias(sets: list[tuple[np.ndarray, np.ndarray]], n_classes: int, rounds: int = 3) -> np.ndarray:
    """Coordinate ascent over a grid of offsets per class, maximising (worst, mean) balanced accuracy;
    sets are (probabilities, labels)."""
    logs = [(np.log(np.maximum(p, 1e-7)), y) for p, y in sets]
    bias = np.zeros(n_classes)
    best = objective(logs, bias)
    for _ in range(rounds):
        moved = False
        for k in range(n_classes):
            for v in GRID:
                trial = bias.copy()
                trial[k] = v
                score = objective(logs, trial)
                if score > best:
                    best, bias, moved = score, trial, True
        if not moved:
            break
    return bias


def fitting_sets(model: str | Path, fer: str, genki: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """(probabilities without any prior correction, labels) for FER-2013 PublicTest and the GENKI-4K subset."""
    from bench.generalisation import face_crops, fer_collections, genki_collection
    from core.detect import DetectorConfig, FaceDetector
    from core.model import Classifier

    clf = Classifier(model)
    clf.meta = replace(clf.meta, class_bias=[])      # fit on the network's own probabilities
    if "happy" not in clf.task.class_names:
        raise ValueError(f"{model}: a prior correction is fitted for an expression model")
    detector = FaceDetector(DetectorConfig())
    public = next(c for c in fer_collections(fer, clf.task) if c.name == "fer2013-public-test")
    genki_all = genki_collection(genki, clf.task, None, split="train")
    keep = np.arange(0, len(genki_all.labels), GENKI_EVERY)
    genki_part = replace(genki_all, name="genki4k-train-subset", labels=genki_all.labels[keep],
                         load=lambda i: genki_all.load(int(keep[i])), key=genki_all.key + f"/every{GENKI_EVERY}")
    sets, sizes = [], {}
    for col in (public, genki_part):
        x, _, _ = face_crops(col, "as is", None, clf.preprocess, detector)
        sets.append((clf.predict(x), col.labels))
        sizes[col.name] = int(len(col.labels))
    return sets, sizes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.prior", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/expression", help="expression model folder (default: %(default)s)")
    p.add_argument("--fer", required=True, help="FER-2013 folder (its PublicTest faces are read)")
    p.add_argument("--genki", required=True, help="GENKI-4K folder (a subset of its training split is read)")
    p.add_argument("--out", required=True, help="new model folder: the same network with the correction")
    args = p.parse_args(argv)
    from core.model import ModelError, ModelMeta

    try:
        if Path(args.out).resolve() == Path(args.model).resolve():
            raise ValueError("--out must be a new folder, not the model itself")
        sets, sizes = fitting_sets(args.model, args.fer, args.genki)
        meta = ModelMeta.load(Path(args.model))
        bias = fit_bias(sets, len(meta.class_names))
    except (ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs = [(np.log(np.maximum(pr, 1e-7)), y) for pr, y in sets]
    before, after = objective(logs, np.zeros(len(bias))), objective(logs, bias)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(args.model).iterdir():
        if f.is_file() and f.name != "README.md":
            shutil.copy2(f, out / f.name)
    meta = replace(meta, class_bias=[round(float(b), 2) for b in bias])
    meta.extra = dict(meta.extra, prior_correction={
        "command": "python -m training.prior " + " ".join(argv if argv is not None else sys.argv[1:]),
        "fitted_on": sizes, "objective": "worst, then mean, balanced accuracy over the fitted sets",
        "before": {"worst": round(before[0], 4), "mean": round(before[1], 4)},
        "after": {"worst": round(after[0], 4), "mean": round(after[1], 4)}})
    meta.save(out)
    print(json.dumps({"class_bias": dict(zip(meta.class_names, meta.class_bias)),
                      "before": before, "after": after, "fitted_on": sizes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
