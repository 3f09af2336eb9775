"""Splits: deterministic per seed, stratified, duplicates on one side, official splits kept."""
from __future__ import annotations

import numpy as np
import pytest

from core.tasks import get_task
from training.datasets import Dataset, Sample
from training.split import SplitConfig, assign_splits, stratified_group_split
from training.split import test_mask as split_mask


def make_dataset(n_per_class: dict[int, int], task: str = "smile", duplicates: int = 0,
                 official: list[str | None] | None = None) -> Dataset:
    """Samples with unique groups, except `duplicates` groups of three identical images per class."""
    samples = []
    for label, n in n_per_class.items():
        for i in range(n):
            group = f"{label}-dup{i % duplicates}" if i < 3 * duplicates else f"{label}-{i}"
            samples.append(Sample(f"/x/{label}_{i}.jpg", label, group))
    if official is not None:
        for s, split in zip(samples, official):
            s.split = split
    return Dataset("test", "/x", get_task(task), samples)


def test_same_seed_same_split_and_another_seed_differs():
    ds = make_dataset({0: 400, 1: 300})
    a = assign_splits(ds, SplitConfig(seed=7))
    b = assign_splits(make_dataset({0: 400, 1: 300}), SplitConfig(seed=7))
    c = assign_splits(ds, SplitConfig(seed=8))
    assert list(a) == list(b)
    assert list(a) != list(c)
    assert set(a) == {"train", "val", "test"}


def test_each_class_is_split_in_the_asked_fractions():
    ds = make_dataset({0: 1000, 1: 600})
    cfg = SplitConfig(val_fraction=0.15, test_fraction=0.2, seed=3)
    splits = assign_splits(ds, cfg)
    labels = ds.labels
    for cls, n in ((0, 1000), (1, 600)):
        for name, frac in (("val", 0.15), ("test", 0.2), ("train", 0.65)):
            got = np.mean(splits[labels == cls] == name)
            assert abs(got - frac) < 0.01, (cls, name, got)


def test_sorted_labels_are_shuffled():
    """GENKI-4K lists all smiles first: a split must not follow file order."""
    ds = make_dataset({1: 500, 0: 500})
    splits = assign_splits(ds, SplitConfig(seed=42))
    first_tests = np.flatnonzero(splits == "test")
    assert first_tests.min() < 100 and first_tests.max() > 900


def test_duplicates_stay_on_one_side():
    ds = make_dataset({0: 300, 1: 300}, duplicates=40)
    for seed in range(5):
        splits = assign_splits(ds, SplitConfig(seed=seed))
        by_group: dict[str, set] = {}
        for s, split in zip(ds.samples, splits):
            by_group.setdefault(s.group, set()).add(split)
        assert all(len(v) == 1 for v in by_group.values())
        dup_groups = {g for g in by_group if "dup" in g}
        assert len(dup_groups) == 80


def test_a_group_with_mixed_labels_goes_to_one_split():
    labels = np.array([0, 1, 0, 1] * 50)
    groups = ["same"] * 4 + [f"g{i}" for i in range(196)]
    out = stratified_group_split(labels, groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)
    assert len(set(out[:4])) == 1


def test_official_splits_are_kept_and_validation_comes_from_training():
    n = 700
    official = ["train"] * 500 + ["public_test"] * 100 + ["private_test"] * 100
    labels = {0: 350, 1: 350}
    ds = make_dataset(labels, task="smile")
    order = np.random.default_rng(0).permutation(n)   # both classes in every official split
    ds.samples = [ds.samples[i] for i in order]
    for s, split in zip(ds.samples, official):
        s.split = split
    splits = assign_splits(ds, SplitConfig(val_fraction=0.2, seed=5))
    np.testing.assert_array_equal(splits[500:600], ["public_test"] * 100)
    np.testing.assert_array_equal(splits[600:], ["private_test"] * 100)
    assert set(splits[:500]) == {"train", "val"}
    assert abs(np.mean(splits[:500] == "val") - 0.2) < 0.02
    assert split_mask(splits, "test").sum() == 200
    assert split_mask(splits, "private_test").sum() == 100
    assert split_mask(splits, "all").all()


def test_an_official_validation_split_is_not_replaced():
    official = ["train"] * 60 + ["val"] * 20 + ["test"] * 20
    ds = make_dataset({0: 50, 1: 50}, official=official)
    splits = assign_splits(ds, SplitConfig(seed=1))
    assert list(splits) == official


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_item_gets_a_split(seed):
    ds = make_dataset({0: 37, 1: 11}, duplicates=3)
    splits = assign_splits(ds, SplitConfig(seed=seed))
    assert all(s in ("train", "val", "test") for s in splits)
    assert (splits == "train").sum() > (splits == "test").sum()
