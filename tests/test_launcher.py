"""Training runs as real separate processes: settings refused before start, a queue of one slot that
starts runs in order, stop (running and queued), resume, a crashing run that leaves the caller alone."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tiny_dataset import make_class_folders
from training import launcher
from training.config import Augment, ConfigError, TrainConfig
from training.runs import Run
from training.train_args import parse_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_class_folders(tmp_path_factory.mktemp("data") / "faces", per_class=30)


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Face crops of the tiny datasets go to a temporary cache (inherited by the training processes)."""
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def quick(folder: Path | str, **kw) -> TrainConfig:
    settings = dict(task="smile", data=str(folder), epochs=1, batch_size=16, width=8, warmup_epochs=0,
                    precision="float32", seed=1)
    settings.update(kw)
    return TrainConfig(**settings)


def wait_until(cond, timeout: float, what: str, poll: float = 0.2):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")


def state(run: Run) -> str:
    return run.status().get("state", "")


def test_command_line_reproduces_every_setting(tmp_path):
    cfg = TrainConfig(task="expression", data="/d/fer", extra_data=["/d/a", "/d/b"], arch="baseline", width=16,
                      epochs=7, batch_size=32, optimizer="sgd", lr=0.01, schedule="step", warmup_epochs=2,
                      weight_decay=0.001, l2=0.0001, dropout=0.2, label_smoothing=0.1, class_weights="sqrt",
                      augment=Augment(flip=False, shift=0.1, rotate=5.0, zoom=0.05, brightness_contrast=0.2,
                                      blur=0.0, erasing=0.25, mixup=0.2, loose=0.4),
                      val_fraction=0.2, test_fraction=0.1, seed=7, split_seed=11, limit=123, faces="detect",
                      precision="float32", patience=3, tta_flip=False, fit_val=True)
    parsed, args = parse_args([*launcher.config_argv(cfg), "--out", str(tmp_path)])
    assert parsed == cfg
    assert parse_args([*launcher.config_argv(TrainConfig(data="x")), "--out", "o"])[0] == TrainConfig(data="x")
    smile = TrainConfig(data="/d/genki", extra_data=["/d/fer"], fer_negatives=0.3, skip_test=True,
                        teacher=["/m/smile", "/m/expression"], distill=0.7)
    assert parse_args([*launcher.config_argv(smile), "--out", "o"])[0] == smile


@pytest.mark.parametrize("change, reason", [
    (dict(epochs=0), "epochs must be between 1 and 1000"),
    (dict(lr=-0.1), "learning rate"),
    (dict(dropout=1.5), "dropout"),
    (dict(optimizer="adagrad"), "optimizer must be one of"),
    (dict(arch="resnet999"), "architecture must be one of"),
    (dict(data="/nonexistent/genki"), "no such dataset"),
    (dict(task="expression"), "no images in class folders named like angry"),
])
def test_bad_settings_are_refused_before_anything_starts(tiny, tmp_path, change, reason):
    with pytest.raises(ConfigError, match=reason):
        launcher.start(quick(tiny, **change), root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_queue_order_stop_and_resume(tiny, tmp_path):
    root = tmp_path / "runs"
    long_run = launcher.start(quick(tiny, epochs=5), root=root, name="a-long", slots=1)
    second = launcher.start(quick(tiny), root=root, name="b-second", slots=1)
    third = launcher.start(quick(tiny), root=root, name="c-third", slots=1)
    dropped = launcher.start(quick(tiny), root=root, name="d-dropped", slots=1)
    positions = [launcher.progress(r).queue_position for r in (second, third, dropped)]
    assert positions in ([1, 2, 3], [2, 3, 4]), positions   # 2, 3, 4 while a-long has not taken the slot yet
    assert {r.name for r in launcher.runs(root)} == {"a-long", "b-second", "c-third", "d-dropped"}

    # the first run trains while the others wait, in order
    wait_until(lambda: len(long_run.metrics()) >= 1, 120, "a first epoch of the long run")
    assert [state(r) for r in (second, third, dropped)] == ["queued"] * 3
    assert [launcher.progress(r).queue_position for r in (second, third, dropped)] == [1, 2, 3]
    p = launcher.progress(long_run)
    assert p.state == "running" and p.epochs == 5 and 1 <= p.epoch < 5 and p.eta_s is not None

    # stop one while queued: it ends at once, without training
    launcher.stop(dropped)
    wait_until(lambda: state(dropped) == "stopped", 30, "the queued run to stop")
    assert dropped.metrics() == [] and not dropped.has_model()

    # stop the running one: it ends cleanly with a model, and the next in line starts
    launcher.stop(long_run)
    wait_until(lambda: state(long_run) == "stopped", 60, "the long run to stop")
    stopped_at = len(long_run.metrics())
    assert 1 <= stopped_at < 5 and long_run.has_model()
    for r in (second, third):
        wait_until(lambda: state(r) == "finished", 120, f"{r.name} to finish")
    a_end = long_run.status()["updated"]
    b, c = second.status(), third.status()
    assert a_end <= b["started"] < b["updated"] <= c["started"], "runs must start one after another, in order"
    assert len(second.metrics()) == 1 and second.evaluation()["n_images"] > 0

    # resume the stopped run from its checkpoint: it continues where it stopped, to the end
    with pytest.raises(ConfigError, match="already trained all its epochs"):
        launcher.resume(second)
    launcher.resume(long_run, slots=1)
    assert state(long_run) in ("queued", "preparing", "running")
    with pytest.raises(ConfigError, match="cannot be resumed now"):
        launcher.resume(long_run)
    wait_until(lambda: state(long_run) == "finished", 180, "the resumed run to finish")
    epochs = [m["epoch"] for m in long_run.metrics()]
    assert epochs == list(range(1, 6)), epochs
    row = launcher.summary(long_run)
    assert row["state"] == "finished" and row["epochs"] == "5/5" and row["test acc"] is not None
    assert "\nepoch 5/5: loss " in launcher.log_tail(long_run, 200)   # the command's own line per epoch


def test_a_crashing_run_fails_alone_with_its_reason(tiny, tmp_path):
    data = shutil.copytree(tiny, tmp_path / "data")
    run = launcher.start(quick(data), root=tmp_path / "runs")
    shutil.rmtree(data)   # gone before the process reads it (it first imports TensorFlow)
    wait_until(lambda: state(run) == "failed", 90, "the run to fail")
    assert "no such dataset" in run.status()["message"]
    assert "no such dataset" in launcher.log_tail(run)
    assert not launcher.progress(run).active
