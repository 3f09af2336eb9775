"""Dataset statistics for the explorer, on small real datasets: splits and class balance, image sizes,
GENKI-4K head pose, missed faces, filters, and a real model's test-split mistakes (cached on disk)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.model import ModelError, ModelMeta
from tiny_dataset import FER, GENKI, make_class_folders, make_mini_fer, make_mini_genki
from training import explore
from training.split import SplitConfig, assign_splits

REPO = Path(__file__).resolve().parents[1]
SMILE_MODEL = REPO / "models" / "smile"
needs_genki = pytest.mark.skipif(not GENKI.is_dir(), reason=f"GENKI-4K is not at {GENKI}")
needs_fer = pytest.mark.skipif(not FER.is_dir(), reason=f"FER-2013 is not at {FER}")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def genki(tmp_path) -> Path:
    if not GENKI.is_dir():
        pytest.skip(f"GENKI-4K is not at {GENKI}")
    return make_mini_genki(tmp_path / "genki", per_class=20)


def test_split_config_comes_from_the_model(tmp_path):
    assert explore.split_config_for(None) == SplitConfig()
    assert explore.split_config_for(tmp_path / "nothing-here") == SplitConfig()
    model = shutil.copytree(SMILE_MODEL, tmp_path / "model")
    meta = ModelMeta.load(model)
    meta.extra["split"] = {"val_fraction": 0.2, "test_fraction": 0.1, "seed": 3}
    meta.save(model)
    assert explore.split_config_for(model) == SplitConfig(0.2, 0.1, 3)


@needs_genki
def test_genki_view(genki):
    view = explore.load_view(genki, "smile", SplitConfig(seed=5))
    t = view.table
    assert len(t) == 40 and list(t["index"]) == list(range(40))

    # class balance per split: the dataset's own split, every image counted once
    splits = assign_splits(view.dataset, SplitConfig(seed=5))
    assert list(t["split"]) == list(splits)
    bal = explore.class_balance(view)
    assert list(bal["split"].unique()) == ["train", "val", "test"]
    assert bal.groupby("class")["count"].sum().to_dict() == {"no smile": 20, "smile": 20}
    for split, part in bal.groupby("split"):
        assert part["share"].sum() == pytest.approx(1.0, abs=1e-3)
        assert part["count"].sum() == (splits == split).sum()
    assert "70% train" in explore.split_description(view)

    # sizes read from the files themselves
    for i in (0, 25):
        h, w = cv2.imread(str(genki / "files" / f"file{i + 1:04d}.jpg")).shape[:2]
        assert (t.loc[i, "width"], t.loc[i, "height"]) == (w, h)
    summary = explore.size_summary(view)
    assert summary.loc["min", "width"] == t["width"].min() and summary.loc["max", "height"] == t["height"].max()
    assert explore.common_sizes(view)["images"].sum() == 40

    # head pose from labels.txt
    assert view.has_pose
    first = [float(v) for v in (genki / "labels.txt").read_text().split("\n")[0].split()[1:]]
    assert [t.loc[0, a] for a in explore.POSE] == pytest.approx(first)

    # detection ran on every photo; the misses are those without a face found
    s = explore.detection_summary(view)
    assert s["detection used"] == 40 and s["faces found"] + s["faces missed"] == 40
    assert list(explore.missed_faces(view)["index"]) == [i for i in range(40) if not t.loc[i, "found"]]

    # filters
    only = explore.filter_samples(view, classes=["smile"], splits=["train"])
    assert set(only["class"]) == {"smile"} and set(only["split"]) == {"train"}
    assert len(only) == ((t["class"] == "smile") & (t["split"] == "train")).sum() > 0
    lo, hi = float(t["yaw"].median()), float(t["yaw"].max())
    turned = explore.filter_samples(view, pose={"yaw": (lo, hi)})
    assert 0 < len(turned) < 40 and turned["yaw"].between(lo, hi).all()
    assert len(explore.filter_samples(view, missed_only=True)) == s["faces missed"]

    # images for the grid
    thumb = explore.thumbnail(view, 0, size=100)
    assert thumb.dtype == np.uint8 and thumb.shape[2] == 3 and max(thumb.shape[:2]) == 100
    assert explore.crop_image(view, 0).shape == (64, 64, 3)


@needs_genki
def test_image_sizes_are_cached_on_disk(genki, tmp_path):
    view = explore.load_view(genki, "smile")
    cached = Path(os.environ["GRIN_CACHE"]) / "explore" / f"sizes-{view.key}.json"
    assert json.loads(cached.read_text()) == view.table[["width", "height"]].to_numpy().tolist()
    cached.write_text(json.dumps([[7, 9]] * 40))          # the next load reads the cache, not the files
    assert explore.load_view(genki, "smile").table.loc[3, "width"] == 7


@needs_genki
def test_model_mistakes_on_the_test_split(genki, tmp_path):
    model = shutil.copytree(SMILE_MODEL, tmp_path / "model")
    view = explore.load_view(genki, "smile", explore.split_config_for(model))
    m = explore.model_mistakes(view, model)
    test = set(np.flatnonzero(view.table["split"] == "test"))
    assert m.n == len(test) > 0 and m.confusion.sum() == m.n
    assert len(m.rows) == m.n - np.trace(m.confusion)
    assert m.accuracy == pytest.approx(np.trace(m.confusion) / m.n, abs=1e-4)
    assert set(m.rows["index"]) <= test
    assert (m.rows["true"] != m.rows["predicted"]).all()
    assert list(m.rows["confidence"]) == sorted(m.rows["confidence"], reverse=True)
    assert (m.rows["confidence"] >= 0.5).all()                   # binary, threshold 0.5: the loser is < 0.5

    # a threshold of 0.01 calls (nearly) every face a smile: the no-smile column empties
    low = explore.model_mistakes(view, model, threshold=0.0)
    assert low.confusion[:, 0].sum() == 0 and low.confusion.sum() == m.n

    # predictions are cached per model file: a replaced model is evaluated again
    cache = Path(os.environ["GRIN_CACHE"]) / "explore"
    assert len(list(cache.glob("predictions-*.npz"))) == 1
    os.utime(model / "model.keras", ns=(1, 1))
    explore.model_mistakes(view, model)
    assert len(list(cache.glob("predictions-*.npz"))) == 2

    # a model for another task is refused with the reason
    with pytest.raises(ModelError, match="the model is for task 'expression'"):
        explore.model_mistakes(view, REPO / "models" / "expression")


@needs_fer
def test_model_mistakes_under_other_class_offsets(tmp_path):
    """The explorer's mistakes follow the sidebar's decision rule: offsets replace the model's own."""
    model = REPO / "models" / "expression"
    view = explore.load_view(make_mini_fer(tmp_path / "fer", per_class=4), "expression",
                             explore.split_config_for(model))
    own = explore.model_mistakes(view, model)
    assert explore.model_mistakes(view, model, class_bias=tuple(ModelMeta.load(model).class_bias)).accuracy == own.accuracy
    neutral = 4
    up = explore.model_mistakes(view, model, class_bias=(0, 0, 0, 0, 5.0, 0, 0))
    down = explore.model_mistakes(view, model, class_bias=(0, 0, 0, 0, -5.0, 0, 0))
    assert up.confusion[:, neutral].sum() == up.n > 0                # every face read neutral
    assert down.confusion[:, neutral].sum() == 0                     # none
    assert own.confusion[:, neutral].sum() < up.n


@needs_fer
def test_fer_official_splits_without_detection(tmp_path):
    root = make_mini_fer(tmp_path / "fer", per_class=4)
    view = explore.load_view(root, "expression")
    t = view.table
    assert len(t) == 7 * 8 and not view.has_pose
    assert set(t["split"]) == {"train", "val", "public_test", "private_test"}
    bal = explore.class_balance(view)
    assert list(bal["split"].unique()) == ["train", "val", "public_test", "private_test"]
    assert (bal.groupby("class")["count"].sum() == 8).all()
    assert explore.detection_summary(view)["detection used"] == 0 and explore.missed_faces(view).empty
    assert (t["width"] == 48).all() and (t["height"] == 48).all()
    assert explore.thumbnail(view, 0).shape == (128, 128, 3)
    assert "Official splits kept" in explore.split_description(view)

    # the smile task reads FER-2013's happy and neutral faces only
    smile = explore.load_view(root, "smile")
    assert smile.dataset.counts() == {"non_smile": 8, "smile": 8}
    assert smile.dataset.skipped == {n: 8 for n in ("angry", "disgust", "fear", "sad", "surprise")}


def test_class_folders_of_small_images(tmp_path):
    root = make_class_folders(tmp_path / "faces", per_class=10, size=80)
    view = explore.load_view(root, "smile")
    assert explore.class_balance(view).groupby("class")["count"].sum().to_dict() == {"no smile": 10, "smile": 10}
    assert (view.table["width"] == 80).all() and (view.table["height"] == 80).all()
    assert explore.detection_summary(view)["detection used"] == 0   # small images are taken as face crops
    assert view.crops.shape == (20, 64, 64, 1)
