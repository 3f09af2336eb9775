"""Knowledge distillation: a trained model (or ensemble folder) labels the training faces with its
probabilities, and the student learns from a blend of those and the true labels.

The teacher is a model of the run's own task, or an expression model teaching a smile run: its
P(happy) is the smile probability (the 28,000 varied FER-2013 faces teach what a smile is not).
Several teachers (`--teacher` repeated) teach the mean of their probabilities.

The teacher runs once per run, with its own test-time views, on the stored training crops; its
probabilities are kept in the run folder so a resumed run reuses them.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from core.model import Classifier, ModelError
from core.preprocess import PreprocessConfig, crop_faces, whole_image_box
from core.tasks import Task
from training.config import CROSS_TASK_TEACHERS, ConfigError

TEACHER_FILE = "teacher_probs.npy"


def centre_cut(x: np.ndarray, size: int) -> np.ndarray:
    """The model's own framing from wide crops (the inverse of the loose cropper's scale 1)."""
    m = (x.shape[1] - size) // 2
    return x[:, m:m + size, m:m + size] if m > 0 else x


def as_task(probs: np.ndarray, teacher: Task, task: Task) -> np.ndarray:
    """The teacher's probabilities over the run's classes: as they are, or P(happy) as the smile class."""
    if teacher.name == task.name:
        return probs
    if (teacher.name, task.name) not in CROSS_TASK_TEACHERS:
        raise ConfigError(f"a {teacher.name} model cannot teach a {task.name} run")
    out = np.zeros((len(probs), task.n_classes), np.float32)
    happy = probs[:, teacher.class_index("happy")]
    out[:, task.class_index("smile")] = happy
    out[:, task.class_index("non_smile")] = 1.0 - happy
    return out


def teacher_inputs(x: np.ndarray, input_size: int, pp: PreprocessConfig) -> np.ndarray:
    """The stored crops (framed for `input_size`, maybe wider) as a teacher taking `pp` sees them: its
    framing cut out, and for another input size each crop resized through the one crop function (no
    second contrast normalisation: the crops carry the run's, which validate checked is the teacher's; no
    deblocking: a resized crop no longer lies on its picture's JPEG grid)."""
    x = centre_cut(x, input_size)
    if x.shape[1] == pp.input_size:
        return x
    cfg = replace(pp, equalize="none", deblock=0.0)
    box = whole_image_box(x.shape[1:], cfg)
    if not len(x):
        return np.zeros((0, *pp.input_shape), np.uint8)
    return np.concatenate([crop_faces(f, [box], cfg) for f in x])


def teacher_probs(teacher: str | Path, x: np.ndarray, cache: Path | None = None, progress=None,
                  task: Task | None = None, input_size: int | None = None) -> np.ndarray:
    """The teacher's probabilities over the run's classes for uint8 training crops `x` framed for
    `input_size` (cached in `cache`); its task and contrast normalisation were checked against the
    run's by `TrainConfig.validate`. A teacher of another input size sees the crops resized."""
    if cache is not None and cache.is_file():
        probs = np.load(cache)
        if probs.shape[0] == len(x):
            return probs
    try:
        clf = Classifier(teacher, warm_up=False, exact=True)
    except (ModelError, OSError) as exc:
        raise ConfigError(f"--teacher {teacher}: {exc}") from None
    x = teacher_inputs(x, input_size or clf.preprocess.input_size, clf.preprocess)
    if x.shape[1:] != clf.preprocess.input_shape:
        raise ConfigError(f"--teacher {teacher} takes {clf.preprocess.input_shape} faces, not {x.shape[1:]}")
    step = 1024
    parts = []
    for i in range(0, len(x), step):
        parts.append(clf.predict(x[i:i + step]))
        if progress:
            progress(min(i + step, len(x)), len(x))
    probs = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, clf.task.n_classes), np.float32)
    probs = as_task(probs, clf.task, task or clf.task)
    if cache is not None:
        tmp = cache.with_name(f".{cache.stem}.tmp.npy")
        np.save(tmp, probs)
        tmp.replace(cache)
    return probs


def teacher_file(i: int) -> str:
    """The run folder's cache of the i-th teacher's probabilities (the first keeps the one-teacher name)."""
    return TEACHER_FILE if i == 0 else f"teacher_probs_{i + 1}.npy"


def mean_teacher_probs(teachers: list[str], x: np.ndarray, folder: Path | None = None, progress=None,
                       task: Task | None = None, input_size: int | None = None) -> np.ndarray:
    """The mean of the teachers' probabilities over the run's classes, each teacher's cached in `folder`;
    `progress(teacher, done, total)`."""
    probs = [teacher_probs(t, x, folder / teacher_file(i) if folder is not None else None,
                           (lambda d, n, t=t: progress(t, d, n)) if progress else None, task, input_size)
             for i, t in enumerate(teachers)]
    return np.mean(probs, axis=0).astype(np.float32)


def teacher_rows(index: np.ndarray, on: str) -> np.ndarray:
    """Which training rows the teacher labels: every one ("all"), or the --extra-data collections' ("extra",
    whose rows have negative indices)."""
    return np.ones(len(index), bool) if on == "all" else np.asarray(index) < 0


def blend_targets(one_hot, soft, weight: float):
    """Training targets: (1 - weight) * true labels + weight * teacher probabilities."""
    return (1.0 - weight) * one_hot + weight * soft
