"""Arrays for a training run: load, extract faces, split, add extra training data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from core.detect import DetectorConfig
from core.preprocess import PreprocessConfig
from core.tasks import Task, get_task
from training.datasets import Dataset, load_dataset
from training.faces import Faces, extract_faces
from training.split import SplitConfig, assign_splits


def task_preprocess(task: Task) -> PreprocessConfig:
    """The task's preprocessing settings (saved with every model trained for it)."""
    return PreprocessConfig(input_size=task.input_size, color_mode=task.color_mode, widen=1.2)


@dataclass
class SplitData:
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray            # sample indices into the source dataset


@dataclass
class Prepared:
    task: Task
    dataset: Dataset
    faces: Faces
    splits: np.ndarray           # split name per sample of `dataset`
    parts: dict[str, SplitData]
    extra_counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "dataset": self.dataset.name, "root": self.dataset.root,
            "n_samples": len(self.dataset.samples),
            "faces_detected": int(self.faces.found.sum()), "faces_fallback": self.faces.n_fallback,
            "unreadable": int((~self.faces.readable).sum()),
            "split_sizes": {k: int(len(v.y)) for k, v in self.parts.items()},
            "extra_training": self.extra_counts,
        }


def load_faces(root: str, task: Task, pp: PreprocessConfig, faces: str = "auto",
               progress: Callable[[int, int], None] | None = None) -> tuple[Dataset, Faces]:
    ds = load_dataset(root, task)
    return ds, extract_faces(ds, pp, faces, DetectorConfig(), progress=progress)


def prepare(task_name: str, data: str, split_cfg: SplitConfig, faces: str = "auto",
            extra_data: list[str] | None = None, limit: int = 0,
            progress: Callable[[str], None] | None = None, fit_val: bool = False) -> Prepared:
    """Everything a run needs, deterministic for a given seed. With `fit_val` the training part also
    holds the validation faces (of the main and the extra data); the test part never changes."""
    task = get_task(task_name)
    pp = task_preprocess(task)
    say = progress or (lambda msg: None)
    ds, fc = load_faces(data, task, pp, faces, lambda i, n: say(f"faces {i}/{n}"))
    splits = assign_splits(ds, split_cfg)
    ok = fc.readable
    parts = {}
    for name in ("train", "val"):
        idx = np.flatnonzero((splits == name) & ok)
        parts[name] = SplitData(fc.x[idx], ds.labels[idx], idx)
    test_idx = np.flatnonzero(np.isin(splits, ["test", "public_test", "private_test"]) & ok)
    parts["test"] = SplitData(fc.x[test_idx], ds.labels[test_idx], test_idx)
    if fit_val:
        tr, va = parts["train"], parts["val"]
        parts["train"] = SplitData(np.concatenate([tr.x, va.x]), np.concatenate([tr.y, va.y]),
                                   np.concatenate([tr.index, va.index]))
    fit_splits = ["train", "val"] if fit_val else ["train"]
    extra_counts = {}
    for root in extra_data or []:
        eds, efc = load_faces(root, task, pp, "auto")
        esplits = assign_splits(eds, split_cfg)
        idx = np.flatnonzero(np.isin(esplits, fit_splits) & efc.readable)  # never their test part
        tr = parts["train"]
        parts["train"] = SplitData(np.concatenate([tr.x, efc.x[idx]]), np.concatenate([tr.y, eds.labels[idx]]),
                                   np.concatenate([tr.index, -1 - idx]))
        extra_counts[root] = int(len(idx))
    if limit:
        rng = np.random.default_rng(split_cfg.seed)
        for name, frac in (("train", 1.0), ("val", 0.25), ("test", 0.25)):
            part = parts[name]
            n = max(task.n_classes * 2, int(limit * frac))
            if len(part.y) > n:
                keep = np.sort(rng.choice(len(part.y), n, replace=False))
                parts[name] = SplitData(part.x[keep], part.y[keep], part.index[keep])
    return Prepared(task, ds, fc, splits, parts, extra_counts)
