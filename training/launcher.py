"""Start, stop, resume and list training runs, each in its own process so the app stays up whatever happens.

A started run is a `python -m training.train ... --max-runs N` process in a new session, logging to
train.log in its run folder; `training.queue` makes it wait its turn when N runs already train.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from core.fileio import write_json_atomic
from core.portable import portable_command
from core.registry import REPO, runs_root
from training.config import Augment, ConfigError, TrainConfig
from training.queue import max_runs, queue_position
from training.runs import CHECKPOINT, CONFIG, STOP, Run, list_runs

LOG_FILE = "train.log"
ACTIVE_STATES = ("queued", "preparing", "running")
TRAIN_NICE = 10     # runs yield the CPU to the app's sessions (webcam frames) and take what is left
_children: dict[int, subprocess.Popen] = {}     # reaped on every listing so no zombie stays


def config_argv(cfg: TrainConfig) -> list[str]:
    """`training.train` command-line arguments that reproduce `cfg` exactly."""
    args = ["--task", cfg.task, "--data", cfg.data]
    for extra in cfg.extra_data:
        args += ["--extra-data", extra]
    for teacher in cfg.teacher:
        args += ["--teacher", teacher]
    skip = {"task", "data", "extra_data", "teacher", "augment", "tta_flip", "fit_val", "skip_test"}
    for f in fields(TrainConfig):
        if f.name not in skip:
            args += ["--" + f.name.replace("_", "-"), str(getattr(cfg, f.name))]
    if not cfg.tta_flip:
        args.append("--no-tta")
    if cfg.fit_val:
        args.append("--fit-val")
    if cfg.skip_test:
        args.append("--skip-test")
    for f in fields(Augment):
        value = getattr(cfg.augment, f.name)
        if f.name == "flip":
            args += [] if value else ["--no-flip"]
        else:
            args += ["--" + f.name.replace("_", "-"), str(value)]
    return args


def check(cfg: TrainConfig) -> None:
    """Raise ConfigError, with the reason, for settings or data a run cannot start with."""
    from core.tasks import get_task
    from training.datasets import DatasetError, load_dataset

    cfg.validate()
    task = get_task(cfg.task)
    for root in [cfg.data, *cfg.extra_data]:
        try:
            load_dataset(Path(root).expanduser(), task)
        except (DatasetError, OSError) as exc:
            raise ConfigError(f"dataset: {exc}") from None


def _run_name(cfg: TrainConfig, root: Path, name: str = "") -> Path:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") if name else \
        f"{cfg.task}-{cfg.resolved_arch()}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    path, n = root / base, 2
    while path.exists():
        path, n = root / f"{base}-{n}", n + 1
    return path


def start(cfg: TrainConfig, root: str | Path | None = None, name: str = "", slots: int | None = None) -> Run:
    """Check the settings, then launch the run (queued if `slots` runs already train). Raises ConfigError."""
    cfg.data = str(Path(cfg.data).expanduser().resolve()) if cfg.data else cfg.data
    cfg.extra_data = [str(Path(p).expanduser().resolve()) for p in cfg.extra_data]
    check(cfg)
    root = Path(root) if root else runs_root()
    run = Run(_run_name(cfg, root, name))
    run.path.mkdir(parents=True)
    argv = [*config_argv(cfg), "--out", str(run.path)]
    write_json_atomic(run.file(CONFIG), {"config": cfg.to_dict(), "command": _command(argv),
                                         "created": dt.datetime.now().isoformat(timespec="seconds")})
    _spawn(run, argv, slots)
    return run


def resume(run: Run, slots: int | None = None) -> Run:
    """Continue an interrupted or stopped run from its last checkpoint. Raises ConfigError."""
    state = run.status().get("state")
    if state in ACTIVE_STATES:
        raise ConfigError(f"run {run.name} is {state}: it cannot be resumed now")
    if not run.file(CHECKPOINT).is_file():
        raise ConfigError(f"run {run.name} has no checkpoint (it ended before its first epoch): start it again")
    metrics = run.metrics()
    if metrics and metrics[-1]["epoch"] >= metrics[-1]["epochs"]:
        raise ConfigError(f"run {run.name} already trained all its epochs")
    run.file(STOP).unlink(missing_ok=True)
    _spawn(run, ["--resume", "--out", str(run.path)], slots)
    return run


def _spawn(run: Run, argv: list[str], slots: int | None) -> None:
    run.set_status(state="queued", queued_at=time.time(), message="waiting to start", pid=None)
    cmd = [sys.executable, "-m", "training.train", *argv, "--max-runs", str(slots or max_runs())]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")  # a crash leaves its traceback in the log
    with open(run.file(LOG_FILE), "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    _children[proc.pid] = proc
    try:   # set before TensorFlow starts its threads, which inherit it
        os.setpriority(os.PRIO_PROCESS, proc.pid, TRAIN_NICE)
    except OSError:
        pass
    run.set_status(pid=proc.pid)   # the child has not yet got past its imports to write its own status


def _command(argv: list[str]) -> str:
    return portable_command(["python", "-m", "training.train", *argv])


def stop(run: Run) -> None:
    """Ask a run to end cleanly: after the current batch if training, at once if still queued."""
    run.request_stop()


def reap() -> None:
    """Collect the exit status of finished child processes."""
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


@dataclass
class Progress:
    state: str
    epoch: int
    epochs: int
    message: str
    eta_s: float | None         # seconds left, from the mean epoch time so far
    queue_position: int | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.epoch / self.epochs) if self.epochs else 0.0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def progress(run: Run) -> Progress:
    reap()
    st = run.status()
    metrics = run.metrics()
    epochs = int(st.get("epochs") or run.config().get("config", {}).get("epochs") or 0)
    epoch = int(metrics[-1]["epoch"]) if metrics else int(st.get("epoch") or 0)
    eta = None
    state = st.get("state", "")
    if metrics and state in ("running", "preparing"):
        eta = sum(m.get("time", 0.0) for m in metrics) / len(metrics) * max(0, epochs - epoch)
    return Progress(state, epoch, epochs, st.get("message", ""), eta,
                    queue_position(run) if state == "queued" else None)


def summary(run: Run) -> dict:
    """One row for the table of runs: settings and final figures."""
    cfg = run.config().get("config", {})
    st, metrics, ev = run.status(), run.metrics(), run.evaluation()
    last = metrics[-1] if metrics else {}
    return {
        "run": run.name, "state": st.get("state", ""), "task": cfg.get("task"),
        "data": Path(cfg.get("data", "")).name, "arch": cfg.get("arch") or _default_arch(cfg.get("task")),
        "epochs": f"{last.get('epoch', 0)}/{cfg.get('epochs')}", "batch": cfg.get("batch_size"),
        "optimizer": cfg.get("optimizer"), "lr": cfg.get("lr"), "schedule": cfg.get("schedule"),
        "dropout": cfg.get("dropout"), "limit": cfg.get("limit") or None, "seed": cfg.get("seed"),
        "split seed": cfg.get("split_seed", cfg.get("seed")),   # runs before split_seed used one seed
        "train acc": last.get("accuracy"), "best val acc": last.get("best_val_accuracy"),
        "test acc": ev.get("accuracy"), "test bal. acc": ev.get("balanced_accuracy"),
        "train time (s)": round(sum(m.get("time", 0.0) for m in metrics), 1) if metrics else None,
        "created": run.config().get("created", ""), "model": run.has_model(),
    }


def _default_arch(task: str | None) -> str:
    from core.tasks import TASKS

    return TASKS[task].default_arch if task in TASKS else ""


def runs(root: str | Path | None = None) -> list[Run]:
    """Runs under the runs folder, newest first."""
    reap()
    return list_runs(Path(root) if root else runs_root())


def log_tail(run: Run, lines: int = 40) -> str:
    try:
        text = run.file(LOG_FILE).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
