"""Where models live and which one the app uses: bundled (models/), local runs, pulled from the Hub."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.fileio import write_json_atomic
from core.model import META_FILE, MODEL_FILE, ModelError, ModelMeta

REPO = Path(__file__).resolve().parent.parent


def models_root() -> Path:
    """Bundled models: models/<task>/."""
    return Path(os.environ.get("GRIN_MODELS", REPO / "models"))


def runs_root() -> Path:
    """Training runs: runs/<run name>/ (or $GRIN_RUNS)."""
    return Path(os.environ.get("GRIN_RUNS", REPO / "runs"))


def hub_root() -> Path:
    """Models pulled from the Hugging Face Hub (or $GRIN_HUB_DIR)."""
    return Path(os.environ.get("GRIN_HUB_DIR", Path.home() / ".cache" / "grin" / "hub"))


def _settings_path() -> Path:
    return runs_root() / "active_models.json"


@dataclass
class ModelEntry:
    name: str              # shown in pickers
    path: Path
    source: str            # bundled / run / hub
    meta: ModelMeta = field(repr=False, default=None)

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def label(self) -> str:
        acc = self.meta.metrics.get("test_accuracy")
        return f"{self.name} ({self.source}" + (f", test {acc:.2%})" if acc is not None else ")")


def _entry(path: Path, source: str, name: str) -> ModelEntry | None:
    if not ((path / MODEL_FILE).is_file() and (path / META_FILE).is_file()):
        return None
    try:
        meta = ModelMeta.load(path)
        meta.validate()
    except ModelError:
        return None
    return ModelEntry(name, path, source, meta)


def list_models(task: str | None = None) -> list[ModelEntry]:
    """All usable models (bundled first, then finished runs, then pulled ones)."""
    found: list[ModelEntry] = []
    roots = [(models_root(), "bundled"), (runs_root(), "run"), (hub_root(), "hub")]
    for root, source in roots:
        if not root.is_dir():
            continue
        for meta_path in sorted(root.glob(f"**/{META_FILE}")):
            folder = meta_path.parent
            if source == "run" and _run_state(folder) not in ("finished", "stopped", ""):
                continue
            name = str(folder.relative_to(root)) if folder != root else folder.name
            e = _entry(folder, source, name)
            if e and (task is None or e.task == task):
                found.append(e)
    return found


def _run_state(folder: Path) -> str:
    try:
        return json.loads((folder / "status.json").read_text()).get("state", "")
    except (FileNotFoundError, json.JSONDecodeError):
        return ""


def default_model(task: str) -> Path:
    """The model the app uses for a task: the one chosen by the user, else the bundled one."""
    try:
        chosen = json.loads(_settings_path().read_text()).get(task)
    except (FileNotFoundError, json.JSONDecodeError):
        chosen = None
    if chosen and _entry(Path(chosen), "chosen", "chosen"):
        return Path(chosen)
    return models_root() / task


def set_default_model(task: str, path: str | Path) -> None:
    """Make a model folder the app's model for its task (validated first)."""
    e = _entry(Path(path), "chosen", "chosen")
    if e is None or e.task != task:
        raise ModelError(f"{path} is not a usable '{task}' model")
    try:
        settings = json.loads(_settings_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        settings = {}
    settings[task] = str(Path(path).resolve())
    write_json_atomic(_settings_path(), settings)
