"""Where a run starts and who teaches it: --init weights, the threshold a --fit-val run inherits, and the
records of both that its card shows."""
from __future__ import annotations

import re
from pathlib import Path

from core.model import MODEL_FILE, ModelError, ModelMeta
from core.portable import portable_path
from training.card_data import training_minutes
from training.config import ConfigError


def inherited_threshold(init: str) -> float:
    """A --fit-val run has no unseen validation faces to tune on: it keeps its --init model's threshold."""
    return ModelMeta.load(Path(init)).threshold if init else 0.5


def init_record(folder: str) -> dict | None:
    """Where a fine-tune started, for its card: the --init model's command, training minutes and own
    --init chain (metadata `init`); None when the folder has no readable metadata."""
    path = Path(folder)
    try:
        meta = ModelMeta.load(path)
    except ModelError:
        return None
    out = re.search(r"--out[ =](\S+)", meta.command)
    run = f"run {Path(out.group(1)).name}" if out else "a model"
    minutes = training_minutes(path)
    record = {"folder": f"{run}, {portable_path(path)} as of {meta.created[:10] or 'an unrecorded day'}",
              "command": meta.command or "not recorded", "minutes": round(minutes, 1) if minutes else None}
    if meta.extra.get("ensemble"):
        record["folder"] += " (an ensemble: its metadata lists the members)"
    if isinstance(meta.extra.get("init"), dict):
        record["init"] = meta.extra["init"]
    return record


def teacher_record(folder: str) -> dict:
    """Which model taught a run, as it was when the run began (a folder like models/expression changes
    with each ship), and its task, for the card."""
    try:
        task = ModelMeta.load(Path(folder)).task
    except ModelError:
        task = ""
    record = init_record(folder)
    return {"folder": record["folder"] if record else portable_path(Path(folder)), "task": task}


def load_init_weights(model, folder: str) -> None:
    """Copy weights from another model of the same architecture and width. The classes may differ
    (another task: transfer learning): then the output layer alone keeps its fresh weights."""
    import keras

    source = keras.saving.load_model(Path(folder) / MODEL_FILE, safe_mode=True, compile=False)
    if len(source.layers) != len(model.layers):
        raise ConfigError(f"--init {folder}: a different architecture ({source.name}) than this run's ({model.name})")
    pairs = [(s, d) for s, d in zip(source.layers, model.layers) if d.weights]
    for i, (src, dst) in enumerate(pairs):
        weights = src.get_weights()
        theirs, ours = [w.shape for w in weights], [w.shape for w in dst.get_weights()]
        if theirs == ours:
            dst.set_weights(weights)
        elif i < len(pairs) - 1:   # anything but the output layer: not the same network
            raise ConfigError(f"--init {folder}: its layer '{src.name}' has weights of shape {theirs}, this "
                              f"run's {ours}: build it with the same --width as that model")
