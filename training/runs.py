"""A training run's folder: its files, status, metrics, and the list of past runs."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.fileio import read_json, read_jsonl, write_json_atomic

CONFIG, STATUS, METRICS, STOP = "config.json", "status.json", "metrics.jsonl", "STOP"
CHECKPOINT, CHECKPOINT_STATE, EVAL = "checkpoint.keras", "checkpoint.json", "eval.json"


@dataclass
class Run:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def config(self) -> dict:
        return read_json(self.file(CONFIG))

    def status(self) -> dict:
        st = read_json(self.file(STATUS))
        if st.get("state") in ("running", "queued", "preparing") and not _alive(st.get("pid")):
            st["state"] = "interrupted"  # the process died without saying so (killed, machine stopped)
        return st

    def metrics(self) -> list[dict]:
        return read_jsonl(self.file(METRICS))

    def evaluation(self) -> dict:
        return read_json(self.file(EVAL))

    def has_model(self) -> bool:
        return (self.path / "model.keras").is_file() and (self.path / "metadata.json").is_file()

    def can_resume(self) -> bool:
        return self.file(CHECKPOINT).is_file() and self.status().get("state") not in ("running", "finished")

    def set_status(self, **fields) -> None:
        st = read_json(self.file(STATUS))
        st.update(fields, updated=time.time())
        write_json_atomic(self.file(STATUS), st)

    def request_stop(self) -> None:
        """Ask a running run to stop cleanly at the end of its current epoch (or batch)."""
        self.file(STOP).write_text("stop\n")

    def stop_requested(self) -> bool:
        return self.file(STOP).exists()


def list_runs(root: str | Path) -> list[Run]:
    """Runs under a folder, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if (p / CONFIG).is_file()]
    return sorted(runs, key=lambda r: r.file(CONFIG).stat().st_mtime, reverse=True)


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    try:  # a zombie child counts as dead
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
