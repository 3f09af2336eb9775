"""Knowledge distillation: a trained model (or ensemble folder) labels the training faces with its
probabilities, and the student learns from a blend of those and the true labels.

The teacher runs once per run, with its own test-time views, on the stored training crops; its
probabilities are kept in the run folder so a resumed run reuses them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.model import Classifier, ModelError
from training.config import ConfigError

TEACHER_FILE = "teacher_probs.npy"


def centre_cut(x: np.ndarray, size: int) -> np.ndarray:
    """The model's own framing from wide crops (the inverse of the loose cropper's scale 1)."""
    m = (x.shape[1] - size) // 2
    return x[:, m:m + size, m:m + size] if m > 0 else x


def teacher_probs(teacher: str | Path, x: np.ndarray, cache: Path | None = None, progress=None) -> np.ndarray:
    """The teacher's class probabilities for uint8 training crops `x` (cached in `cache`); its task and
    contrast normalisation were checked against the run's by `TrainConfig.validate`."""
    if cache is not None and cache.is_file():
        probs = np.load(cache)
        if probs.shape[0] == len(x):
            return probs
    try:
        clf = Classifier(teacher, warm_up=False)
    except (ModelError, OSError) as exc:
        raise ConfigError(f"--teacher {teacher}: {exc}") from None
    x = centre_cut(x, clf.preprocess.input_size)
    if x.shape[1:] != clf.preprocess.input_shape:
        raise ConfigError(f"--teacher {teacher} takes {clf.preprocess.input_shape} faces, not {x.shape[1:]}")
    step = 1024
    parts = []
    for i in range(0, len(x), step):
        parts.append(clf.predict(x[i:i + step]))
        if progress:
            progress(min(i + step, len(x)), len(x))
    probs = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, clf.task.n_classes), np.float32)
    if cache is not None:
        tmp = cache.with_name(f".{cache.stem}.tmp.npy")
        np.save(tmp, probs)
        tmp.replace(cache)
    return probs


def blend_targets(one_hot, soft, weight: float):
    """Training targets: (1 - weight) * true labels + weight * teacher probabilities."""
    return (1.0 - weight) * one_hot + weight * soft
