"""Stochastic weight averaging: the running mean survives a resume, batch-norm statistics are
recomputed exactly, and a run with --swa-epochs records what the average scored."""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from tiny_dataset import make_class_folders
from training.config import TrainConfig
from training.swa import WeightAverage, recalibrate_batch_norm
from training.optimizer import lr_at
from training.train import main


def test_the_average_is_the_mean_and_survives_a_reload(tmp_path):
    path = tmp_path / "swa.npz"
    avg = WeightAverage(path)
    avg.add(3, [np.full((2, 2), 1.0), np.array([0.0])])
    avg.add(4, [np.full((2, 2), 3.0), np.array([4.0])])
    again = WeightAverage(path)            # a resumed run reads the sum back
    again.add(4, [np.full((2, 2), 100.0), np.array([100.0])])   # an epoch already in it: ignored
    again.add(5, [np.full((2, 2), 5.0), np.array([8.0])])
    assert again.epochs == [3, 4, 5]
    mean = again.mean()
    np.testing.assert_allclose(mean[0], np.full((2, 2), 3.0))
    np.testing.assert_allclose(mean[1], [4.0])
    assert mean[0].dtype == np.float32


def test_an_empty_average_says_so(tmp_path):
    with pytest.raises(ValueError, match="no epochs averaged"):
        WeightAverage(tmp_path / "none.npz").mean()


def test_batch_norm_statistics_become_the_data_average():
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.BatchNormalization()(inputs)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=i, scale=1 + i, size=(32, 4)).astype(np.float32) for i in range(5)]
    assert recalibrate_batch_norm(model, batches) == 5
    bn = model.layers[-1]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0), rtol=1e-3)
    assert bn.momentum == 0.99   # put back


def test_swa_epochs_train_at_the_swa_rate_after_the_schedule():
    cfg = TrainConfig(epochs=10, lr=1e-3, warmup_epochs=0, swa_epochs=3, swa_lr=2e-4)
    rates = [lr_at(e, cfg) for e in range(10)]
    assert rates[0] == pytest.approx(1e-3)
    assert rates[6] == pytest.approx(1e-3 * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * 6 / 7))))
    assert rates[7:] == [2e-4] * 3
    plain = TrainConfig(epochs=10, lr=1e-3, warmup_epochs=0, swa_epochs=3)   # no SWA rate: schedule unchanged
    assert [lr_at(e, plain) for e in range(10)] == [lr_at(e, TrainConfig(epochs=10, lr=1e-3, warmup_epochs=0))
                                                     for e in range(10)]


@pytest.mark.slow
def test_a_run_with_swa_records_the_averaged_model(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path / "cache"))
    faces = make_class_folders(tmp_path / "faces", per_class=30, size=72)
    out = tmp_path / "swa-run"
    handler = signal.getsignal(signal.SIGTERM)
    try:
        rc = main(["--task", "smile", "--data", str(faces), "--out", str(out), "--width", "8",
                   "--batch-size", "8", "--limit", "40", "--precision", "float32", "--warmup-epochs", "0",
                   "--epochs", "3", "--swa-epochs", "2", "--swa-lr", "1e-3"])
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert rc == 0
    meta = json.loads((out / "metadata.json").read_text())
    swa = meta["extra"]["swa"]
    assert swa["epochs"] == [2, 3] and swa["bn_batches"] > 0
    assert 0 <= swa["val_accuracy"] <= 1
    assert swa["used"] == (swa["val_accuracy"] > swa["best_single_epoch_val_accuracy"])
    assert [round(r["lr"], 6) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())][1:] \
        == [1e-3, 1e-3]
    assert (out / "swa.npz").is_file() and (out / "model.keras").is_file()


def test_swa_settings_are_checked():
    from training.config import ConfigError

    with pytest.raises(ConfigError, match="SWA epochs must be between 0 and the epochs"):
        TrainConfig(data="x", epochs=3, swa_epochs=5).validate()
