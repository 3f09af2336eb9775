"""At most N runs train at once: a queued run waits, oldest first, for a free slot lock in its runs folder.

The slots are files locked with fcntl.flock and held for the life of the training process, so a slot
frees itself when a run ends in any way (finished, failed, stopped, killed).
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from training.runs import STATUS, Run

SLOTS_DIR = ".slots"
_held: list[int] = []          # slot file descriptors this process holds (released at exit)


def max_runs() -> int:
    """How many runs may train at once ($GRIN_MAX_RUNS, default 1)."""
    try:
        return max(1, int(os.environ.get("GRIN_MAX_RUNS", "1")))
    except ValueError:
        return 1


def queued_runs(root: Path) -> list[Run]:
    """Live runs waiting for a slot under `root`, first in line first."""
    waiting = []
    if not root.is_dir():
        return waiting
    for folder in root.iterdir():
        if not (folder / STATUS).is_file():
            continue
        run = Run(folder)
        st = run.status()
        if st.get("state") == "queued":
            waiting.append((float(st.get("queued_at") or 0), folder.name, run))
    return [r for *_, r in sorted(waiting, key=lambda t: t[:2])]


def queue_position(run: Run) -> int | None:
    """1 for the next run to start; None when the run is not waiting."""
    for i, r in enumerate(queued_runs(run.path.parent), start=1):
        if r.path.resolve() == run.path.resolve():
            return i
    return None


def _try_slot(root: Path, n_slots: int) -> int | None:
    folder = root / SLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_slots):
        fd = os.open(folder / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd
    return None


def wait_for_slot(run_dir: str | Path, n_slots: int, poll: float = 0.5) -> bool:
    """Block until this run may train (it holds a slot from then on); False if stopped while waiting."""
    run = Run(Path(run_dir))
    run.path.mkdir(parents=True, exist_ok=True)
    st = run.status()
    queued_at = st.get("queued_at") if st.get("state") == "queued" else None
    run.set_status(state="queued", pid=os.getpid(), queued_at=queued_at or time.time(),
                   message=f"queued: waiting for a free training slot (at most {n_slots} at once)")
    while True:
        if run.stop_requested():
            run.set_status(state="stopped", message="stopped while queued", pid=None)
            return False
        line = queued_runs(run.path.parent)
        if line and line[0].path.resolve() == run.path.resolve():
            fd = _try_slot(run.path.parent, n_slots)
            if fd is not None:
                _held.append(fd)
                run.set_status(state="preparing", message="starting", started=time.time())
                return True
        time.sleep(poll)
