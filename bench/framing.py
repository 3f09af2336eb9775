"""How framing changes an expression model's accuracy: each image taken whole, only the detected face, and
both views averaged (what `--faces cropped` does), on loosely and tightly framed collections:

`python -m bench.framing --model models/expression --genki <genki4k> --fer <fer2013> --media <media> --json out.json`

- GENKI-4K photos (every 4th; loose head-and-shoulders framing), happy against not happy from the smile labels;
- FER-2013 PublicTest faces upscaled to 144 px (tight framing; PrivateTest stays unread);
- the seven posed photos of `<media>/expressions`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from core.detect import DetectorConfig, FaceDetector
from core.fileio import write_json_atomic
from core.preprocess import crop_faces, whole_image_box
from core.runtime import quiet_command

ALIASES = {"disgusted": "disgust", "fearful": "fear", "surprised": "surprise"}


def views(images, clf, detector: FaceDetector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities of the whole-image view and of the detected-face view, and where a face was found."""
    pp = clf.preprocess
    whole, framed, found = [], [], []
    for img in images:
        whole.append(crop_faces(img, [whole_image_box(img.shape, pp)], pp)[0])
        boxes = detector.detect(img)
        framed.append(crop_faces(img, boxes[:1], pp)[0] if boxes else whole[-1])
        found.append(bool(boxes))
    return clf.predict(np.stack(whole)), clf.predict(np.stack(framed)), np.array(found)


def scores(p_whole, p_face, found, correct) -> dict:
    both = np.where(found[:, None], (p_whole + p_face) / 2, p_whole)
    return {"n": int(len(found)), "faces_found": int(found.sum()),
            "whole": round(float(correct(p_whole).mean()), 4),
            "detected_face": round(float(correct(np.where(found[:, None], p_face, p_whole)).mean()), 4),
            "both_views": round(float(correct(both).mean()), 4)}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def run(model: str, genki: str | None, fer: str | None, media: str | None) -> dict:
    from core.model import Classifier

    clf = Classifier(model, exact=True)
    names = list(clf.task.class_names)
    if "happy" not in names:
        raise ValueError(f"{model}: framing is measured with an expression model (classes {names})")
    detector = FaceDetector(DetectorConfig())
    out = {"model": model}
    if genki:
        root = Path(genki)
        labels = [int(line.split()[0]) for line in (root / "labels.txt").read_text().split("\n") if line.strip()]
        files = sorted((root / "files").iterdir())[::4]
        y = np.array(labels[::4][:len(files)])
        pw, pf, found = views([_rgb(f) for f in files], clf, detector)
        happy = names.index("happy")
        out["genki4k_happy_vs_not"] = scores(pw, pf, found, lambda p: (p.argmax(1) == happy) == (y == 1))
    if fer:
        imgs, y = [], []
        for c, name in enumerate(names):
            for f in sorted((Path(fer) / "test" / name).glob("PublicTest_*.jpg")):
                imgs.append(cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (144, 144),
                                       interpolation=cv2.INTER_CUBIC))
                y.append(c)
        y = np.array(y)
        pw, pf, found = views(imgs, clf, detector)
        out["fer2013_public_test_144px"] = scores(pw, pf, found, lambda p: p.argmax(1) == y)
    if media:
        files = sorted((Path(media) / "expressions").glob("*.jpg"))
        y = np.array([names.index(ALIASES.get(f.stem, f.stem)) for f in files])
        pw, pf, found = views([_rgb(f) for f in files], clf, detector)
        out["posed_photos"] = scores(pw, pf, found, lambda p: p.argmax(1) == y)
    return out


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m bench.framing", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("--model", default="models/expression")
    p.add_argument("--genki", help="GENKI-4K folder")
    p.add_argument("--fer", help="FER-2013 image-folder root (its test/ folder is read)")
    p.add_argument("--media", help="folder holding expressions/*.jpg")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    try:
        result = run(args.model, args.genki, args.fer, args.media)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_json_atomic(Path(args.json), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
