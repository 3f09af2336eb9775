"""Deterministic, stratified train/validation/test splits that keep exact duplicates together."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from training.datasets import Dataset

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42

    def to_dict(self) -> dict:
        return asdict(self)


def stratified_group_split(labels: np.ndarray, groups: list[str], fractions: dict[str, float],
                           seed: int) -> np.ndarray:
    """Assign each item a split name. Items sharing a group land together; each class is split
    in the given fractions; the result depends only on (labels, groups, fractions, seed)."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    by_class: dict[int, list[str]] = defaultdict(list)
    for g in sorted(by_group):
        majority = np.bincount(labels[by_group[g]]).argmax()
        by_class[int(majority)].append(g)
    out = np.empty(len(labels), dtype=object)
    names = list(fractions)
    for cls in sorted(by_class):
        keys = by_class[cls]
        rng = np.random.default_rng([seed, cls])
        order = rng.permutation(len(keys))
        bounds = np.round(np.cumsum([fractions[n] for n in names]) * len(keys)).astype(int)
        start = 0
        for name, end in zip(names, bounds):
            for k in order[start:end]:
                out[by_group[keys[k]]] = name
            start = end
    return out


def assign_splits(ds: Dataset, cfg: SplitConfig) -> np.ndarray:
    """Split names per sample. Official test splits are kept; validation is carved from training."""
    labels, groups = ds.labels, [s.group for s in ds.samples]
    official = np.array([s.split for s in ds.samples], dtype=object)
    if all(s is None for s in official):
        train = 1.0 - cfg.val_fraction - cfg.test_fraction
        return stratified_group_split(labels, groups, {"train": train, "val": cfg.val_fraction,
                                                       "test": cfg.test_fraction}, cfg.seed)
    out = official.copy()
    out[out == None] = "train"  # noqa: E711 (object array)
    is_train = out == "train"
    idx = np.flatnonzero(is_train)
    if not (out == "val").any() and len(idx):
        sub = stratified_group_split(labels[idx], [groups[i] for i in idx],
                                     {"train": 1.0 - cfg.val_fraction, "val": cfg.val_fraction}, cfg.seed)
        out[idx] = sub
    return out


def test_mask(splits: np.ndarray, which: str) -> np.ndarray:
    """Samples of a named split; 'test' covers the official public and private test splits."""
    if which == "all":
        return np.ones(len(splits), bool)
    if which == "test":
        return np.isin(splits, ["test", "public_test", "private_test"])
    return splits == which


def split_indices(ds: Dataset, split_cfg: SplitConfig | dict | None, which: str) -> np.ndarray:
    """Indices of a dataset's samples in a named split (see `test_mask`), split as `split_cfg` (a model's
    recorded split, a SplitConfig, or None for the default) says."""
    cfg = split_cfg if isinstance(split_cfg, SplitConfig) else SplitConfig(**(split_cfg or {}))
    return np.flatnonzero(test_mask(assign_splits(ds, cfg), which))
