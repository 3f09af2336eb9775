"""What one class's offset trades in an expression model's decisions:

`python -m bench.offset_curve [--model models/expression] [--class neutral] [--lo -0.5 --hi 1.5 --step 0.1]
[--json out.json]`

The faces are read once in float32 (the network's own probabilities), then scored at every offset of the
sweep, the other classes keeping the model's own: `training.prior`'s fitting sets (FER-2013 PublicTest;
every third GENKI-4K training photo, happy or not, the latter to read neutral), each also under the
suite condition that is hardest for it (PublicTest at JPEG quality 10, where the suite's worst case lies;
GENKI-4K tightly cropped, where calm faces read neutral least). FER-2013 PrivateTest (where the suite's
worst case and the ship rules' floor lie) and GENKI-4K's test split are not read. The figures say what the sidebar's "Neutral offset" (and `core.predict
--offset`) buys: calm faces read neutral, against accuracy on FER-2013's expressive faces.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.decision import own_offsets
from core.fileio import write_json_atomic
from core.portable import portable_command, portable_path
from core.runtime import quiet_command
from training.prior import balanced_accuracy

CONDITIONS = {"fer2013-public-test": ("jpeg10",), "genki4k-train-subset": ("tight",)}   # beside each as it is


def score_offsets(sets: dict[str, tuple[np.ndarray, np.ndarray]], base: np.ndarray, k: int,
                  offsets: np.ndarray) -> list[dict]:
    """Per offset of class `k` (the others at `base`): accuracy, balanced accuracy and class k's recall
    on each (probabilities, labels) set."""
    rows = []
    for v in offsets:
        bias = base.copy()
        bias[k] = v
        row = {"offset": round(float(v), 3) + 0.0}   # + 0.0: no "-0.0"
        for name, (p, y) in sets.items():
            pred = np.argmax(np.log(np.maximum(p, 1e-7)) + bias, axis=1)
            row[name] = {"accuracy": round(float((pred == y).mean()), 4),
                         "balanced_accuracy": round(balanced_accuracy(y, pred), 4),
                         "recall": round(float((pred[y == k] == k).mean()), 4) if (y == k).any() else None}
        rows.append(row)
    return rows


def format_table(result: dict) -> str:
    names = list(result["rows"][0])[1:]
    head = f"{result['class']} offset  " + "  ".join(f"{n:>34}" for n in names)
    sub = " " * 15 + "  ".join(f"{'acc':>10} {'balanced':>10} {'recall':>12}" for _ in names)
    lines = [head, sub]
    for r in result["rows"]:
        mark = " *" if abs(r["offset"] - result["model_offset"]) < 1e-6 else "  "
        cells = "  ".join(f"{r[n]['accuracy']:>10.2%} {r[n]['balanced_accuracy']:>10.2%} "
                          + (f"{r[n]['recall']:>12.2%}" if r[n]["recall"] is not None else f"{'-':>12}") for n in names)
        lines.append(f"{r['offset']:>+13.2f}{mark}{cells}")
    lines.append("* the model's own offset")
    return "\n".join(lines)


def main(argv=None) -> int:
    quiet_command(argv)
    from bench.generalisation import add_collection_arguments

    p = argparse.ArgumentParser(prog="python -m bench.offset_curve", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("--model", default="models/expression", help="expression model folder (default: %(default)s)")
    p.add_argument("--class", dest="cls", default="neutral", help="the class whose offset moves (default: %(default)s)")
    p.add_argument("--lo", type=float, default=-0.5, help="first offset (default: %(default)s)")
    p.add_argument("--hi", type=float, default=1.5, help="last offset (default: %(default)s)")
    p.add_argument("--step", type=float, default=0.1, help="offset step (default: %(default)s)")
    p.add_argument("--json", help="write the figures here")
    add_collection_arguments(p)
    args = p.parse_args(argv)
    if not (args.lo <= args.hi and 0.01 <= args.step <= 1.0 and -5 <= args.lo and args.hi <= 5):
        print("error: offsets run from --lo to --hi (within -5 to 5) in steps of 0.01 to 1", file=sys.stderr)
        return 2
    from bench.generalisation import face_crops
    from core.detect import DetectorConfig, FaceDetector
    from core.model import ModelError, ModelMeta
    from training.prior import fitting_collections, uncorrected

    try:
        meta = ModelMeta.load(Path(args.model))
        if args.cls not in meta.class_names:
            raise ValueError(f"--class: '{args.cls}' is not among {', '.join(meta.class_names)}")
        clf = uncorrected(args.model)
        detector = FaceDetector(DetectorConfig())
        sets = {}
        for col in fitting_collections(args.fer, args.genki, clf.task):
            x, _, boxes = face_crops(col, "as is", None, clf.preprocess, detector)
            sets[col.name] = (clf.predict(x), col.labels)
            for cond in CONDITIONS[col.name]:
                x, _, _ = face_crops(col, cond, boxes, clf.preprocess, detector)
                sets[f"{col.name}/{cond}"] = (clf.predict(x), col.labels)
    except (ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    k = meta.class_names.index(args.cls)
    base = np.asarray(own_offsets(meta.class_bias, len(meta.class_names)), np.float64)
    offsets = np.round(np.arange(args.lo, args.hi + args.step / 2, args.step), 3)
    result = {"model": portable_path(args.model), "class": args.cls, "model_offset": round(float(base[k]), 3),
              "sizes": {n: int(len(y)) for n, (_, y) in sets.items()},
              "command": portable_command(["python", "-m", "bench.offset_curve",
                                           *(argv if argv is not None else sys.argv[1:])]),
              "rows": score_offsets(sets, base, k, offsets)}
    print(format_table(result))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
