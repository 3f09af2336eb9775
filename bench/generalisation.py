"""How a model does on faces from collections and conditions it never trained on:

`python -m bench.generalisation [--model models/smile | --task expression] [--genki <genki4k>] [--fer <fer2013>]
[--media <media>] --json out.json`

Every check reads its dataset through the project's loaders and its faces through the product's own path
(`training.faces.face_from_image`, as `training.evaluate --faces auto` does), so a figure here is what a user
handing Grin such pictures would see. Checks, for either task:

- GENKI-4K test split (599 photos: smiles and non-smiles; for an expression model happy and neutral), as it is
  and under each condition of `bench.conditions` (tight, loose, small gray, JPEG, dark, low contrast);
- FER-2013 test (smile: happy against all six other expressions; expression: PublicTest and PrivateTest), as it is
  and under the conditions that fit small tight crops;
- the seven posed photos of `<media>/expressions` and the frames of `<media>/smile_video.mp4` (neutral, then a
  smile), which no Grin model trains on.

The worst case is the lowest balanced accuracy over the checks of at least MIN_N_WORST faces (smaller ones,
the seven photos, are shown but too noisy to decide on). Crops are cached under the face cache.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bench.conditions import CONDITIONS, CROP_CONDITIONS
from core.detect import DetectorConfig, FaceDetector
from core.fileio import write_json_atomic
from core.portable import portable_path
from core.preprocess import PreprocessConfig
from core.runtime import quiet_command
from core.tasks import Task

MIN_N_WORST = 50
MAX_CONDITION_FACES = 8000          # every face of FER-2013's test folder (7,178); a larger collection: an even subset
RESULT_FILE = "generalisation.json"   # a model folder's suite figures (the card and the Models page read it)
SUITE_SPLITS = ("test", "val")
CACHE_VERSION = 1
VIDEO_NEUTRAL, VIDEO_SMILE = range(0, 17), range(20, 69)   # frames of smile_video.mp4 (its README)
MEDIA_CLASSES = {"disgusted": "disgust", "fearful": "fear", "surprised": "surprise"}


@dataclass
class Collection:
    """Pictures with labels in the model's classes, read lazily (`load(i)` gives RGB or gray uint8)."""

    name: str                      # e.g. "genki4k-test"
    dataset: str                   # the collection's own name, e.g. "GENKI-4K"
    split: str
    labels: np.ndarray             # class index in the model's task
    load: Callable[[int], np.ndarray]
    cropped: bool                  # pictures are already face crops (no detection)
    key: str                       # identifies the pictures, for the crop cache
    family: str                    # "genki4k", "fer2013", "media": which training collection it belongs to
    conditions: tuple[str, ...] = ()
    note: str = ""


@dataclass
class Check:
    name: str
    group: str                     # "benchmark" (a held-out split), "condition" (it, transformed), "collection"
    dataset: str
    split: str
    condition: str
    n: int
    accuracy: float
    balanced_accuracy: float
    per_class_recall: dict[str, float]
    predicted_share: dict[str, float]
    roc_auc: float | None = None
    faces_found: float | None = None
    trained_on_collection: bool = False
    note: str = ""
    labels: str = ""               # "as is" checks: the class index given to each face, one digit a face


@dataclass
class SuiteResult:
    task: str
    model: str
    checks: list[Check] = field(default_factory=list)
    elapsed_s: float = 0.0
    created: str = ""

    @property
    def ranked(self) -> list[Check]:
        """The checks that count for the worst case (enough faces), lowest balanced accuracy first."""
        return sorted((c for c in self.checks if c.n >= MIN_N_WORST), key=lambda c: c.balanced_accuracy)

    def as_dict(self) -> dict:
        worst = self.ranked[0] if self.ranked else None
        return {"task": self.task, "model": self.model, "created": self.created, "elapsed_s": round(self.elapsed_s, 1),
                "min_n_for_worst": MIN_N_WORST,
                "worst_balanced_accuracy": worst.balanced_accuracy if worst else None,
                "worst_check": worst.name if worst else None,
                "checks": [asdict(c) for c in self.checks]}


def score(y: np.ndarray, probs: np.ndarray, pred: np.ndarray, task: Task) -> dict:
    """Accuracy, balanced accuracy over the classes present, their recalls, prediction shares, ROC AUC (binary)."""
    from training.metrics import roc_auc

    present = sorted(set(int(v) for v in y))
    exact = {task.class_names[c]: float((pred[y == c] == c).mean()) for c in present}
    share = np.bincount(pred, minlength=task.n_classes) / max(1, len(pred))
    out = {"n": int(len(y)), "accuracy": round(float((pred == y).mean()), 4) if len(y) else 0.0,
           # from the recalls before rounding, as training.evaluate computes it
           "balanced_accuracy": round(float(np.mean(list(exact.values()))), 4) if exact else 0.0,
           "per_class_recall": {k: round(v, 4) for k, v in exact.items()},
           "predicted_share": {n: round(float(s), 4) for n, s in zip(task.class_names, share) if s > 0}}
    if task.is_binary and len(present) == 2:
        pos = task.class_names.index(task.positive_class)
        auc = roc_auc((y == pos).astype(int), probs[:, pos])
        out["roc_auc"] = None if auc is None else round(float(auc), 4)
    return out


def _rgb_reader(paths: list[str]) -> Callable[[int], np.ndarray]:
    from training.faces import _read
    from training.datasets import Sample

    return lambda i: _read(Sample(paths[i], 0, ""))


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def genki_collection(root: str, task: Task, split_cfg: dict | None, split: str = "test") -> Collection:
    """GENKI-4K's seeded test (or validation) split; for an expression model its smiles are happy and the
    others neutral."""
    from training.datasets import load_dataset
    from training.split import split_indices
    from core.tasks import SMILE

    ds = load_dataset(root, SMILE)
    idx = split_indices(ds, split_cfg, split)
    y = ds.labels[idx]
    if task.name != "smile":
        y = np.where(y == 1, task.class_index("happy"), task.class_index("neutral"))
    paths = [ds.samples[i].source for i in idx]
    what = "smiles and non-smiles" if task.name == "smile" else "smiles as happy, non-smiles as neutral"
    return Collection(f"genki4k-{split}", "GENKI-4K", split, y, _rgb_reader(paths), False,
                      _key(root, paths, y.tolist()), "genki4k", tuple(CONDITIONS), what)


def fer_collections(root: str, task: Task, split_cfg: dict | None = None, split: str = "test") -> list[Collection]:
    """FER-2013's official test faces: happy against all six others (smile), or PublicTest and PrivateTest;
    with `split="val"`, the validation part carved from its training faces by the model's split instead."""
    from training.datasets import load_dataset
    from training.split import split_indices

    ds = load_dataset(root, task, fer_negatives=1.0 if task.name == "smile" else 0.0)
    if split == "val":
        test = [ds.samples[i] for i in split_indices(ds, split_cfg, "val")]
    else:
        test = [s for s in ds.samples if s.split in ("test", "public_test", "private_test")]
    vs = "happy against all six other expressions"
    if task.name == "smile" or split == "val":
        parts = [(f"fer2013-{split}", split, test, CROP_CONDITIONS, vs if task.name == "smile" else "")]
    else:
        parts = [("fer2013-public-test", "PublicTest", [s for s in test if s.split == "public_test"], (), ""),
                 ("fer2013-private-test", "PrivateTest", [s for s in test if s.split == "private_test"],
                  CROP_CONDITIONS, "")]
    out = []
    for name, split, samples, conds, note in parts:
        paths, y = [s.source for s in samples], np.array([s.label for s in samples])
        out.append(Collection(name, "FER-2013", split, y, _rgb_reader(paths), True, _key(root, paths, y.tolist()),
                              "fer2013", conds, note))
    return out


def media_collections(root: str, task: Task) -> list[Collection]:
    """The seven posed photos and the smile video's clearly neutral and clearly smiling frames."""
    out = []
    photos = sorted((Path(root) / "expressions").glob("*.jpg"))
    if photos:
        names = [MEDIA_CLASSES.get(p.stem, p.stem) for p in photos]
        if task.name == "smile":
            y = np.array([task.class_index("smile" if n == "happy" else "non_smile") for n in names])
        else:
            y = np.array([task.class_index(n) for n in names])
        paths = [str(p) for p in photos]
        out.append(Collection("posed-photos", "media/expressions", "all", y, _rgb_reader(paths), False,
                              _key(paths), "media", (), "one posed photo per expression"))
    video = Path(root) / "smile_video.mp4"
    if video.is_file():
        frames = _video_frames(video)
        keep = [i for i in range(len(frames)) if i in VIDEO_NEUTRAL or i in VIDEO_SMILE]
        pos, neg = ("smile", "non_smile") if task.name == "smile" else ("happy", "neutral")
        y = np.array([task.class_index(pos if i in VIDEO_SMILE else neg) for i in keep])
        out.append(Collection("smile-video", "media/smile_video.mp4", "frames", y, lambda i: frames[keep[i]], False,
                              _key(str(video), video.stat().st_size, keep), "media", (),
                              f"frames {VIDEO_NEUTRAL.start}-{VIDEO_NEUTRAL.stop - 1} neutral, "
                              f"{VIDEO_SMILE.start}-{VIDEO_SMILE.stop - 1} smiling"))
    return out


def _video_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a (short) video as RGB arrays."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@dataclass
class Subset:
    """An evenly spaced part of a collection (`keep`: indices into it), for its condition checks."""

    collection: Collection
    keep: np.ndarray
    every: int

    def __getattr__(self, name):
        return getattr(self.collection, name)

    @property
    def labels(self) -> np.ndarray:
        return self.collection.labels[self.keep]

    @property
    def key(self) -> str:
        return self.collection.key if self.every == 1 else f"{self.collection.key}/every{self.every}"

    def load(self, i: int) -> np.ndarray:
        return self.collection.load(int(self.keep[i]))


def condition_subset(col: Collection) -> Subset:
    """The faces a collection's condition checks use: all of them, or every k-th of a collection larger than
    MAX_CONDITION_FACES. Until session 43 the cap was 1,200: a third of PrivateTest, whose 18 disgusted faces
    then moved the expression worst case 0.8 points each."""
    every = max(1, -(-len(col.labels) // MAX_CONDITION_FACES))
    return Subset(col, np.arange(0, len(col.labels), every), every)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if n % 100 in (11, 12, 13) else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def trained_families(meta) -> set[str]:
    """The collections ("genki4k", "fer2013") a model's training data came from, read from its metadata."""
    from training.datasets import is_fer2013

    data = meta.extra.get("data", {})
    fams = {data.get("dataset", "")}
    for path in list(data.get("extra_training", {})) + list(meta.extra.get("train_config", {}).get("extra_data", [])):
        fams.add("fer2013" if is_fer2013(path) or "fer" in Path(path).name.lower() else
                 "genki4k" if "genki" in Path(path).name.lower() else path)
    return {f for f in fams if f}


def face_crops(col: Collection, condition: str, boxes: np.ndarray | None, pp, detector: FaceDetector,
               use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (N, size, size, c), `found` and boxes for a collection's pictures under a condition ("as is":
    unchanged); a condition is applied around each picture's as-is face box. Cached like training's faces:
    the crops for these preprocessing settings, and the detector's boxes for any settings (detection is
    the slow part, and models of other sizes share it)."""
    from core.preprocess import crop_faces, whole_image_box
    from training.faces import _save_npz, cache_dir, face_box

    folder = cache_dir() / "generalisation"
    det_key = _key(col.key, condition, detector.config.to_dict(), CACHE_VERSION)
    crops_path = folder / f"{col.name}-{_key(det_key, pp.to_dict())}.npz"
    boxes_path = folder / f"{col.name}-boxes-{det_key}.npz"
    if use_cache and crops_path.is_file():
        with np.load(crops_path) as z:
            return z["x"], z["found"], z["boxes"]
    known = None
    if use_cache and boxes_path.is_file():
        with np.load(boxes_path) as z:
            known = z["found"], z["boxes"]
    n = len(col.labels)
    x = np.zeros((n, *pp.input_shape), np.uint8)
    found, out_boxes = np.zeros(n, bool), np.zeros((n, 4), np.int32)
    for i in range(n):
        img = col.load(i)
        if condition != "as is":
            img = CONDITIONS[condition](img, tuple(int(v) for v in boxes[i]))
        if known is not None:
            found[i] = known[0][i]
            box = tuple(int(v) for v in known[1][i]) if found[i] else whole_image_box(img.shape, pp)
        else:
            box, found[i] = face_box(img, col.cropped, "auto", detector, pp)
        out_boxes[i] = box
        x[i] = crop_faces(img, [box], pp)[0]
    if use_cache:
        _save_npz(crops_path, x=x, found=found, boxes=out_boxes)
        if known is None:
            _save_npz(boxes_path, found=found, boxes=out_boxes)
    return x, found, out_boxes


def run_suite(model: str | Path, genki: str | None = None, fer: str | None = None, media: str | None = None,
              conditions: tuple[str, ...] | None = None, use_cache: bool = True,
              log: Callable[[str], None] | None = None, split: str = "test",
              only: tuple[str, ...] | None = None, readings: dict | None = None,
              preprocess: PreprocessConfig | None = None) -> SuiteResult:
    """Every check that the given collections allow, for one model folder. `split="val"` reads the validation
    parts of GENKI-4K and FER-2013 instead of their test splits: the figures to choose recipes by.
    `only`: just the collections of these names (e.g. the ship rules' benchmark split). `readings`, a dict:
    filled with each check's (true labels, float32 probabilities), to score other decision rules on.
    `preprocess`: a PreprocessConfig to cut the faces with instead of the model's own (the same face size
    and colour), to score a preprocessing setting before it is written into the model."""
    from core.model import Classifier, ModelMeta
    from core.pipeline import decide

    meta = ModelMeta.load(Path(model))
    task = meta.validate()
    if split not in SUITE_SPLITS:
        raise ValueError(f"split must be one of {', '.join(SUITE_SPLITS)}, not '{split}'")
    cols: list[Collection] = []
    split_cfg = meta.extra.get("split")
    if genki:
        cols.append(genki_collection(genki, task, split_cfg if "genki4k" in trained_families(meta) else None, split))
    if fer:
        cols += fer_collections(fer, task, split_cfg, split)
    if media:
        cols += media_collections(media, task)
    if only is not None:
        cols = [c for c in cols if c.name in only]
    if not cols:
        raise ValueError("no collection to check: give --genki, --fer or --media (none was found)")
    clf = Classifier(model, exact=True)
    pp = preprocess or clf.preprocess
    if pp.input_shape != clf.preprocess.input_shape:
        raise ValueError(f"the faces must be cut at the model's {clf.preprocess.input_shape}, not {pp.input_shape}")
    detector = FaceDetector(DetectorConfig())
    seen = trained_families(meta)
    result = SuiteResult(task.name, portable_path(model), created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    t0 = time.perf_counter()
    for col in cols:
        x0, found0, boxes0 = face_crops(col, "as is", None, pp, detector, use_cache)
        wanted = [c for c in col.conditions if conditions is None or c in conditions]
        sub = condition_subset(col)
        for condition in ["as is", *wanted]:
            part = col if condition == "as is" else sub
            if log:
                log(f"{part.name} / {condition}: {len(part.labels)} faces")
            if condition == "as is":
                x, found = x0, found0
            else:
                x, found, _ = face_crops(part, condition, boxes0[sub.keep], pp, detector, use_cache)
            probs = clf.predict(x)
            pred = decide(probs, task, clf.meta.threshold)
            name = col.name if condition == "as is" else f"{col.name}/{condition}"
            if readings is not None:
                readings[name] = (part.labels, probs)
            figures = score(part.labels, probs, pred, task)
            in_training = col.family in seen
            group = "collection" if not in_training else "benchmark" if condition == "as is" else "condition"
            note = col.note if part is col or sub.every == 1 else f"{col.note}; every {_ordinal(sub.every)} face".lstrip("; ")
            result.checks.append(Check(
                name=name, group=group, dataset=col.dataset, split=col.split, condition=condition,
                faces_found=None if col.cropped else round(float(found.mean()), 4),
                trained_on_collection=in_training, note=note,
                labels="".join(map(str, pred)) if condition == "as is" else "", **figures))
    result.elapsed_s = time.perf_counter() - t0
    return result


def format_table(result: SuiteResult) -> str:
    """The suite as a fixed-width table, worst case last."""
    lines = [f"{result.model} ({result.task}): {len(result.checks)} checks in {result.elapsed_s:.0f} s",
             f"{'check':<34} {'n':>5} {'acc':>6} {'bal':>6} {'auc':>6}  per-class recall"]
    for c in result.checks:
        auc = f"{c.roc_auc:.3f}" if c.roc_auc is not None else "-"
        recall = " ".join(f"{k} {v:.2f}" for k, v in c.per_class_recall.items())
        small = " (small)" if c.n < MIN_N_WORST else ""
        lines.append(f"{c.name:<34} {c.n:>5} {c.accuracy:>6.3f} {c.balanced_accuracy:>6.3f} {auc:>6}  {recall}{small}")
    d = result.as_dict()
    if d["worst_check"]:
        lines.append(f"worst balanced accuracy: {d['worst_balanced_accuracy']:.4f} ({d['worst_check']})")
    return "\n".join(lines)


def load_result(folder: str | Path) -> dict | None:
    """A model folder's saved suite figures, or None when it has none (or they cannot be read)."""
    try:
        d = json.loads((Path(folder) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("checks"), list) else None


def comparison(results: dict[str, dict]) -> list[dict]:
    """One row per check (in the first result's order), one balanced-accuracy column per named result."""
    order: list[str] = []
    cells: dict[str, dict] = {}
    for label, r in results.items():
        for c in r["checks"]:
            if c["name"] not in cells:
                order.append(c["name"])
                cells[c["name"]] = {"check": c["name"], "faces": c["n"]}
            cells[c["name"]][label] = c["balanced_accuracy"]
    return [cells[n] for n in order]


def add_model_arguments(p: argparse.ArgumentParser, task: str) -> None:
    """--verbose, --model and --task (the bundled model of a task where no --model is given)."""
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("--model", help="model folder (default: models/<task>)")
    p.add_argument("--task", default=task, choices=("smile", "expression"),
                   help="with no --model, the bundled model of this task (default: %(default)s)")


def chosen_model(args: argparse.Namespace) -> str:
    """The --model folder, else the bundled model of --task."""
    return args.model or str(Path(__file__).resolve().parents[1] / "models" / args.task)


def add_collection_arguments(p: argparse.ArgumentParser) -> None:
    """--genki, --fer and --media, each defaulting to its folder under ../shared."""
    from bench import default_media
    from training.sources import shared_dataset

    p.add_argument("--genki", default=str(shared_dataset("genki4k")), help="GENKI-4K folder (default: ../shared/...)")
    p.add_argument("--fer", default=str(shared_dataset("fer2013")), help="FER-2013 folder (default: ../shared/...)")
    p.add_argument("--media", default=str(default_media()),
                   help="folder with expressions/*.jpg and smile_video.mp4 (default: ../shared/media)")


def collection_paths(args: argparse.Namespace) -> dict[str, str | None]:
    """run_suite's genki, fer and media arguments: each folder given, or None (said on stderr) where it is absent."""
    paths = {k: v if v and Path(v).exists() else None for k, v in
             (("genki", args.genki), ("fer", args.fer), ("media", args.media))}
    for k, v in paths.items():
        if v is None:
            print(f"note: no {k} collection at {getattr(args, k)}: its checks are left out", file=sys.stderr)
    return paths


def main(argv=None) -> int:
    quiet_command(argv)

    p = argparse.ArgumentParser(prog="python -m bench.generalisation", description=__doc__.splitlines()[0])
    add_model_arguments(p, "smile")
    add_collection_arguments(p)
    p.add_argument("--split", default="test", choices=SUITE_SPLITS,
                   help="test: GENKI-4K's and FER-2013's test splits (the figures a card reports); val: their "
                        "validation parts (the figures to choose recipes by; default: %(default)s)")
    p.add_argument("--conditions", nargs="*", choices=sorted(CONDITIONS),
                   help="only these conditions (default: all that fit each collection)")
    p.add_argument("--no-cache", action="store_true", help="recompute every crop")
    p.add_argument("--json", help="write the checks here")
    args = p.parse_args(argv)
    model = chosen_model(args)
    paths = collection_paths(args)
    try:
        result = run_suite(model, **paths, conditions=tuple(args.conditions) if args.conditions else None,
                           use_cache=not args.no_cache, split=args.split,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        write_json_atomic(Path(args.json), result.as_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
