"""Dataset statistics for the explorer: class balance per split, image sizes, head pose, missed faces,
a filterable sample listing, and a model's mistakes on the test split (expensive parts cached on disk).
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from core.fileio import write_bytes_atomic, write_json_atomic
from core.imageio import ImageError, load_image
from core.model import ModelError, ModelMeta
from core.tasks import get_task
from training.datasets import Dataset, load_dataset
from training.faces import _uses_detection, cache_dir, extract_faces
from training.split import SplitConfig, assign_splits, test_mask

POSE = ("yaw", "pitch", "roll")
SPLIT_ORDER = ("train", "val", "test", "public_test", "private_test")
_VERSION = 1                      # bump to invalidate the on-disk caches of this module


@dataclass
class DatasetView:
    """A dataset ready to explore: one row per sample, and the face crops the models see."""

    dataset: Dataset
    table: pd.DataFrame           # index, name, class, split, width, height, readable, detection, found, pose
    crops: np.ndarray             # uint8 (N, size, size, channels), in sample order
    split: SplitConfig
    key: str                      # identifies the dataset's content

    @property
    def has_pose(self) -> bool:
        return all(c in self.table for c in POSE) and self.table["yaw"].notna().any()


def split_config_for(model_dir: str | Path | None) -> SplitConfig:
    """The split a model was trained with (its metadata), else the default split."""
    if model_dir:
        try:
            s = ModelMeta.load(Path(model_dir)).extra.get("split")
            if s:
                return SplitConfig(**s)
        except (ModelError, TypeError):
            pass
    return SplitConfig()


def dataset_key(ds: Dataset) -> str:
    h = hashlib.sha1(json.dumps([ds.name, ds.root, ds.task.name, _VERSION]).encode())
    for s in ds.samples:
        h.update(f"{s.group}:{s.label};".encode())
    return h.hexdigest()[:16]


def _explore_cache() -> Path:
    return cache_dir() / "explore"


def image_sizes(ds: Dataset, key: str) -> np.ndarray:
    """(N, 2) width, height of every sample's original image (0, 0 if unreadable); cached on disk."""
    path = _explore_cache() / f"sizes-{key}.json"
    try:
        return np.array(json.loads(path.read_text()), dtype=np.int64).reshape(-1, 2)
    except (FileNotFoundError, json.JSONDecodeError, ValueError):
        pass
    from PIL import Image

    sizes = np.zeros((len(ds.samples), 2), np.int64)
    for i, s in enumerate(ds.samples):
        if isinstance(s.source, np.ndarray):
            sizes[i] = s.source.shape[1], s.source.shape[0]
            continue
        try:
            with Image.open(s.source) as im:    # reads the header only
                sizes[i] = im.size
        except (OSError, ValueError):
            pass
    write_json_atomic(path, sizes.tolist())
    return sizes


def _view_preprocess(view: DatasetView):
    """The preprocessing the view's crops were cut with: the task's defaults."""
    from training.data import task_preprocess

    return task_preprocess(view.dataset.task)


def load_view(root: str | Path, task_name: str, split: SplitConfig | None = None,
              progress: Callable[[int, int], None] | None = None) -> DatasetView:
    """Load a dataset with its face crops (the cached ones training uses) and per-sample facts."""
    from training.data import task_preprocess

    task = get_task(task_name)
    ds = load_dataset(Path(root).expanduser().resolve(), task)
    split = split or SplitConfig()
    faces = extract_faces(ds, task_preprocess(task), "auto", progress=progress)
    key = dataset_key(ds)
    sizes = image_sizes(ds, key)
    detection = np.array([_uses_detection(s.cropped, "auto", (h, w)) for s, (w, h) in zip(ds.samples, sizes)])
    table = pd.DataFrame({
        "index": np.arange(len(ds.samples)),
        "name": [s.name for s in ds.samples],
        "class": [task.display_names[s.label] for s in ds.samples],
        "split": assign_splits(ds, split).astype(str),
        "width": sizes[:, 0], "height": sizes[:, 1],
        "readable": faces.readable,
        "detection": detection & faces.readable,
        "found": faces.found,
    })
    if any(s.meta.get("yaw") is not None for s in ds.samples):
        for c in POSE:
            table[c] = [float(s.meta.get(c, np.nan)) for s in ds.samples]
    return DatasetView(ds, table, faces.x, split, key)


def split_description(view: DatasetView) -> str:
    """How the splits were made, in one sentence."""
    s = view.split
    if any(x.split for x in view.dataset.samples):
        return (f"Official splits kept; validation is {s.val_fraction:.0%} of the training images (seed {s.seed}, "
                "stratified, duplicates kept together).")
    return (f"{1 - s.val_fraction - s.test_fraction:.0%} train / {s.val_fraction:.0%} validation / "
            f"{s.test_fraction:.0%} test, seed {s.seed}, stratified, duplicates kept together.")


def class_balance(view: DatasetView) -> pd.DataFrame:
    """Images per split and class, with each class's share of its split."""
    names = list(view.dataset.task.display_names)
    df = view.table.groupby(["split", "class"]).size().rename("count").reset_index()
    full = pd.MultiIndex.from_product([_splits(view), names], names=["split", "class"])
    df = df.set_index(["split", "class"]).reindex(full, fill_value=0).reset_index()
    df["share"] = (df["count"] / df.groupby("split")["count"].transform("sum")).round(4)
    return df


def _splits(view: DatasetView) -> list[str]:
    present = set(view.table["split"])
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


def size_summary(view: DatasetView) -> pd.DataFrame:
    """Min / median / mean / max of the original images' width and height (readable images)."""
    t = view.table[view.table["readable"]]
    return t[["width", "height"]].agg(["min", "median", "mean", "max"]).round(1)


def common_sizes(view: DatasetView, top: int = 10) -> pd.DataFrame:
    t = view.table[view.table["readable"]]
    sizes = (t["width"].astype(str) + "x" + t["height"].astype(str)).value_counts().head(top)
    return sizes.rename_axis("size").rename("images").reset_index()


def missed_faces(view: DatasetView) -> pd.DataFrame:
    """Samples where detection ran and found no face (the whole image was used instead)."""
    t = view.table
    return t[t["detection"] & ~t["found"]]


def detection_summary(view: DatasetView) -> dict:
    t = view.table
    return {"images": len(t), "unreadable": int((~t["readable"]).sum()),
            "detection used": int(t["detection"].sum()), "faces found": int((t["detection"] & t["found"]).sum()),
            "faces missed": int((t["detection"] & ~t["found"]).sum())}


def filter_samples(view: DatasetView, classes: list[str] | None = None, splits: list[str] | None = None,
                   pose: dict[str, tuple[float, float]] | None = None, missed_only: bool = False) -> pd.DataFrame:
    """The sample listing, narrowed by class, split, head pose range (radians) and missed faces."""
    t = view.table
    keep = t["readable"].copy()
    if classes:
        keep &= t["class"].isin(classes)
    if splits:
        keep &= t["split"].isin(splits)
    for c, (lo, hi) in (pose or {}).items():
        if c in t:
            keep &= t[c].between(lo, hi)
    if missed_only:
        keep &= t["detection"] & ~t["found"]
    return t[keep]


def thumbnail(view: DatasetView, index: int, size: int = 128) -> np.ndarray:
    """The original image of a sample, RGB, longer side `size` (a grey square if it cannot be read)."""
    s = view.dataset.samples[index]
    try:
        img = s.source if isinstance(s.source, np.ndarray) else load_image(s.source)
    except ImageError:
        return np.full((size, size, 3), 128, np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    scale = size / max(h, w)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)


def crop_image(view: DatasetView, index: int) -> np.ndarray:
    """The face crop the model sees for a sample, as RGB."""
    c = view.crops[index]
    return np.repeat(c, 3, axis=2) if c.shape[2] == 1 else c


@dataclass
class Mistakes:
    """A model's results on a dataset's test split."""

    class_names: list[str]        # display names
    confusion: np.ndarray         # rows: true class, columns: predicted
    accuracy: float
    balanced_accuracy: float
    n: int
    rows: pd.DataFrame            # the misclassified samples: index, name, true, predicted, confidence
    split: str


def test_predictions(view: DatasetView, model_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(sample indices, probabilities) of a model on the test split it was trained with; cached on disk
    per model file (path and modification time) and dataset."""
    model_dir = Path(model_dir).resolve()
    meta = ModelMeta.load(model_dir)
    if meta.task != view.dataset.task.name:
        raise ModelError(f"the model is for task '{meta.task}', the dataset was loaded for "
                         f"'{view.dataset.task.name}'")
    stamp = [(model_dir / f).stat().st_mtime_ns for f in ("model.keras", "metadata.json")]
    split = split_config_for(model_dir)
    key = hashlib.sha1(json.dumps([str(model_dir), stamp, view.key, split.to_dict(), _VERSION]).encode())
    path = _explore_cache() / f"predictions-{key.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["index"], z["probs"]
    from core.model import Classifier

    mask = test_mask(assign_splits(view.dataset, split), "test") & view.table["readable"].to_numpy()
    index = np.flatnonzero(mask)
    clf = Classifier(model_dir, warm_up=False)
    probs = clf.predict(model_crops(view, clf.preprocess, index))
    buf = io.BytesIO()
    np.savez(buf, index=index, probs=probs)
    write_bytes_atomic(path, buf.getvalue())
    return index, probs


def model_crops(view: DatasetView, pp, index: np.ndarray) -> np.ndarray:
    """The crops a model with preprocessing `pp` sees for the samples `index`: the view's own, or for a
    model trained at another face size or contrast, cut anew."""
    if pp == _view_preprocess(view):
        return view.crops[index]
    part = replace(view.dataset, samples=[view.dataset.samples[i] for i in index])
    return extract_faces(part, pp, "auto").x


def mistake_heatmaps(view: DatasetView, explainer, rows: pd.DataFrame, method: str = "occlusion",
                     side: int = 128) -> list[np.ndarray]:
    """For each mistake (rows of Mistakes.rows), the crop the model saw under the heat map of the class it
    wrongly gave (RGB, `side` px): what the model looked at when it got the face wrong."""
    from core.explain import overlay

    task = view.dataset.task
    crops = model_crops(view, explainer.preprocess, rows["index"].to_numpy())
    targets = [task.display_names.index(p) for p in rows["predicted"]]
    return [overlay(c, e.heat, side) for c, e in zip(crops, explainer.explain(crops, targets, method))]


def model_mistakes(view: DatasetView, model_dir: str | Path, threshold: float | None = None,
                   class_bias: tuple[float, ...] | None = None) -> Mistakes:
    """Confusion matrix and misclassified test samples of a model under a decision rule (threshold,
    offsets on the log-probabilities: the model's own where None)."""
    from core.decision import decide, own_offsets
    from core.model import apply_class_bias
    from training.metrics import classification_report

    task = view.dataset.task
    index, probs = test_predictions(view, model_dir)
    meta = ModelMeta.load(Path(model_dir))
    if threshold is None:
        threshold = meta.threshold
    if class_bias is not None:   # the model's own offsets are in `probs` already: move from them to these
        own = np.asarray(own_offsets(meta.class_bias, task.n_classes), np.float32)
        probs = apply_class_bias(probs, np.asarray(class_bias, np.float32) - own)
    y = view.dataset.labels[index]
    pred = decide(probs, task, threshold)
    report = classification_report(y, probs, list(task.class_names), pred)
    wrong = np.flatnonzero(pred != y)
    names = np.array(task.display_names)
    rows = pd.DataFrame({
        "index": index[wrong], "name": view.table["name"].to_numpy()[index[wrong]],
        "true": names[y[wrong]], "predicted": names[pred[wrong]],
        "confidence": probs[wrong, pred[wrong]].round(3), "p(true)": probs[wrong, y[wrong]].round(3),
    }).sort_values("confidence", ascending=False, kind="stable").reset_index(drop=True)
    return Mistakes(list(names), np.array(report["confusion_matrix"]), report["accuracy"],
                    report["balanced_accuracy"], len(index), rows, "test")
