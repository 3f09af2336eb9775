"""Looser framings for training (`--loose`): wide crops cut from the real photo, and the random cut."""
from __future__ import annotations

import signal

import numpy as np
import pytest

from tiny_dataset import GENKI, make_mini_genki
from training.augment import LOOSE_MAX, make_loose_cropper, wide_side
from training.split import SplitConfig


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_wide_side_puts_the_models_crop_on_whole_pixels():
    for size in (48, 64):
        side = wide_side(size)
        assert (side - size) % 2 == 0 and abs(side / size - LOOSE_MAX) < 0.05


def cut(x, context, prob, seed=0):
    import tensorflow as tf

    crop = make_loose_cropper(prob, 64, seed)
    out, _ = crop(tf.constant(x, tf.float32), tf.constant(context), tf.zeros([len(x), 2]))
    return out.numpy()


def test_the_models_own_framing_is_an_exact_centre_cut():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 116, 116, 1)).astype(np.float32)
    out = cut(x, np.array([True, False] * 3), prob=0.0)
    np.testing.assert_allclose(out, x[:, 26:90, 26:90], atol=0.01)   # float rounding only


def test_looser_framings_only_for_faces_with_real_surroundings():
    """A gradient image: a looser cut spans a wider range of values than the centre; already-cropped
    faces (no surroundings) always keep their own framing."""
    ramp = np.tile(np.linspace(0, 255, 116, dtype=np.float32)[None, :, None], (116, 1, 1))
    x = np.stack([ramp] * 64)
    context = np.arange(64) % 2 == 0
    out = cut(x, context, prob=1.0)
    span = out[:, :, -1, 0].mean(1) - out[:, :, 0, 0].mean(1)
    centre = ramp[0, 89, 0] - ramp[0, 26, 0]
    np.testing.assert_allclose(span[~context], centre, atol=1e-2)
    assert (span[context] > centre + 1).mean() > 0.9        # scales drawn in (1, 1.8]
    assert span[context].max() <= 255 + 1e-3
    assert span[context].std() > 10                          # drawn at random, not one fixed zoom


@pytest.mark.skipif(not GENKI.is_dir(), reason="needs GENKI-4K photos in ../shared/datasets/genki4k")
def test_prepare_gives_wide_training_crops_around_the_same_faces(tmp_path):
    from training.data import prepare

    root = make_mini_genki(tmp_path / "genki", per_class=20)
    plain = prepare("smile", str(root), SplitConfig())
    wide = prepare("smile", str(root), SplitConfig(), wide_side=116)
    tr, ptr = wide.parts["train"], plain.parts["train"]
    assert tr.x.shape[1:] == (116, 116, 1) and ptr.x.shape[1:] == (64, 64, 1)
    assert wide.parts["val"].x.shape[1:] == (64, 64, 1) and wide.parts["test"].x.shape[1:] == (64, 64, 1)
    np.testing.assert_array_equal(tr.index, ptr.index)
    np.testing.assert_array_equal(tr.context, plain.faces.found[ptr.index])
    assert tr.context.sum() >= 0.8 * len(tr.y)               # faces found in the photos
    assert wide.summary()["training_faces_with_surroundings"] == tr.context.sum()
    assert "training_faces_with_surroundings" not in plain.summary()
    centre = tr.x[:, 26:90, 26:90].astype(float)
    diff = np.abs(centre - ptr.x).mean(axis=(1, 2, 3))
    assert (diff[~tr.context] == 0).all()                     # no surroundings: exactly the usual crop
    assert diff[tr.context].mean() < 8                        # the same face, resampled once more


def test_a_run_with_looser_framings_trains_and_serves_at_the_usual_size(tmp_path):
    """`--loose 1` end to end: the model still takes the task's 64x64 crops, and the run records it."""
    import json

    from core.model import Classifier
    from tiny_dataset import make_class_folders
    from training.train import main

    root = (make_mini_genki(tmp_path / "genki", per_class=20) if GENKI.is_dir()
            else make_class_folders(tmp_path / "faces", per_class=20, size=72))
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGTERM)       # main() installs its own; put it back afterwards
    try:
        code = main(["--task", "smile", "--data", str(root), "--out", str(out), "--epochs", "1", "--width", "8",
                     "--batch-size", "8", "--precision", "float32", "--warmup-epochs", "0", "--loose", "1"])
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert code == 0
    assert json.loads((out / "config.json").read_text())["config"]["augment"]["loose"] == 1.0
    clf = Classifier(out)
    assert clf.predict(np.zeros((2, 64, 64, 1), np.uint8)).shape == (2, 2)
