"""Arrays for a training run: load, extract faces, split, add extra training data."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from core.detect import DetectorConfig
from core.preprocess import PreprocessConfig
from core.tasks import Task, get_task
from training.datasets import Dataset, DatasetError, is_fer2013, load_dataset
from training.faces import Faces, extract_faces, wide_crops
from training.split import SplitConfig, assign_splits


def task_preprocess(task: Task, input_size: int = 0, equalize: str = "none") -> PreprocessConfig:
    """The task's preprocessing settings (saved with every model trained for it), at the task's face
    size unless `input_size` asks for another."""
    return PreprocessConfig(input_size=input_size or task.input_size, color_mode=task.color_mode, widen=1.2,
                            equalize=equalize or "none")


@dataclass
class SplitData:
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray            # sample indices into the source dataset (extra data: -1 - index)
    context: np.ndarray | None = None   # wide crops only: the crop holds the photo's real surroundings

    def take(self, rows: np.ndarray) -> "SplitData":
        return SplitData(self.x[rows], self.y[rows], self.index[rows],
                         None if self.context is None else self.context[rows])

    def __add__(self, other: "SplitData") -> "SplitData":
        context = None if self.context is None else np.concatenate([self.context, other.context])
        return SplitData(np.concatenate([self.x, other.x]), np.concatenate([self.y, other.y]),
                         np.concatenate([self.index, other.index]), context)


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
            **({"training_faces_with_surroundings": int(self.parts["train"].context.sum())}
               if self.parts["train"].context is not None else {}),
        }


def load_faces(root: str, task: Task, pp: PreprocessConfig, faces: str = "auto",
               progress: Callable[[int, int], None] | None = None,
               fer_negatives: float = 0.0) -> tuple[Dataset, Faces]:
    ds = load_dataset(root, task, fer_negatives)
    return ds, extract_faces(ds, pp, faces, DetectorConfig(), progress=progress)


def wide_preprocess(pp: PreprocessConfig, side: int) -> PreprocessConfig:
    """The same framing centred in a larger crop of `side` pixels: looser framings are cut from it."""
    return replace(pp, input_size=side, widen=pp.widen * side / pp.input_size)


def _training_rows(ds: Dataset, fc: Faces, idx: np.ndarray, wide_fc: Faces | None, index: np.ndarray) -> SplitData:
    """Training faces; with wide crops, those and whether each holds real surroundings (a face found in a
    photo, not an already-cropped face or the whole-image fallback, whose margins are only padding)."""
    if wide_fc is None:
        return SplitData(fc.x[idx], ds.labels[idx], index)
    x, context = wide_fc.x[idx], fc.found[idx]
    m = (x.shape[1] - fc.x.shape[1]) // 2
    x[~context, m:m + fc.x.shape[1], m:m + fc.x.shape[2]] = fc.x[idx[~context]]   # shown only as is: exactly
    return SplitData(x, ds.labels[idx], index, context)


def prepare(task_name: str, data: str, split_cfg: SplitConfig, faces: str = "auto",
            extra_data: list[str] | None = None, limit: int = 0,
            progress: Callable[[str], None] | None = None, fit_val: bool = False,
            wide_side: int = 0, fer_negatives: float = 0.0, input_size: int = 0,
            equalize: str = "none", faces_progress: Callable[[int, int], None] | None = None) -> Prepared:
    """Everything a run needs, deterministic for a given seed. With `fit_val` the training part also
    holds the validation faces (of the main and the extra data); the test part never changes. With
    `wide_side`, training faces are wider crops of that many pixels (validation and test are not).
    `fer_negatives` adds that fraction of FER-2013's non-happy, non-neutral faces as no-smile faces;
    `input_size` (0: the task's) is the side of the face crops; `equalize` the crops' contrast normalisation;
    `faces_progress(done, total)` follows the face detection of each dataset."""
    task = get_task(task_name)
    if fer_negatives and not any(is_fer2013(r) for r in [data, *(extra_data or [])]):
        raise DatasetError("--fer-negatives takes its no-smile faces from FER-2013: give FER-2013 as --data "
                           "or as --extra-data")
    pp = task_preprocess(task, input_size, equalize)
    say = progress or (lambda msg: None)
    def counted(i: int, n: int) -> None:
        say(f"faces {i}/{n}")
        if faces_progress:
            faces_progress(i, n)

    ds, fc = load_faces(data, task, pp, faces, counted, fer_negatives)
    wide = (lambda d, f: wide_crops(d, f, wide_preprocess(pp, wide_side))) if wide_side else (lambda d, f: None)
    splits = assign_splits(ds, split_cfg)
    ok = fc.readable
    fit_splits = ["train", "val"] if fit_val else ["train"]
    wide_fc = wide(ds, fc)
    parts = {}
    idx = np.concatenate([np.flatnonzero((splits == name) & ok) for name in fit_splits])
    parts["train"] = _training_rows(ds, fc, idx, wide_fc, idx)
    idx = np.flatnonzero((splits == "val") & ok)
    parts["val"] = SplitData(fc.x[idx], ds.labels[idx], idx)
    test_idx = np.flatnonzero(np.isin(splits, ["test", "public_test", "private_test"]) & ok)
    parts["test"] = SplitData(fc.x[test_idx], ds.labels[test_idx], test_idx)
    extra_counts = {}
    for root in extra_data or []:
        eds, efc = load_faces(root, task, pp, "auto", faces_progress, fer_negatives=fer_negatives)
        esplits = assign_splits(eds, split_cfg)
        idx = np.flatnonzero(np.isin(esplits, fit_splits) & efc.readable)  # never their test part
        parts["train"] = parts["train"] + _training_rows(eds, efc, idx, wide(eds, efc), -1 - idx)
        extra_counts[root] = int(len(idx))
    if limit:
        rng = np.random.default_rng(split_cfg.seed)
        for name, frac in (("train", 1.0), ("val", 0.25), ("test", 0.25)):
            part = parts[name]
            n = max(task.n_classes * 2, int(limit * frac))
            if len(part.y) > n:
                parts[name] = part.take(np.sort(rng.choice(len(part.y), n, replace=False)))
    return Prepared(task, ds, fc, splits, parts, extra_counts)
