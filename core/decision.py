"""The decision rule of a task: which class a row of probabilities means, and how near it is to another."""
from __future__ import annotations

import numpy as np

from core.tasks import Task


def decide(probs: np.ndarray, task: Task, threshold: float = 0.5) -> np.ndarray:
    """Predicted class per row: a threshold on the positive class for binary tasks, else argmax."""
    if task.is_binary and len(probs):
        pos = task.class_names.index(task.positive_class)
        return np.where(probs[:, pos] >= threshold, pos, 1 - pos)
    return np.argmax(probs, axis=1) if len(probs) else np.zeros(0, int)


def decision_margin(probs: np.ndarray, task: Task, threshold: float = 0.5) -> np.ndarray:
    """Per row, how far the probabilities are from deciding otherwise: the positive class's distance
    from the threshold (binary tasks), else the gap between the two most probable classes."""
    if len(probs) == 0:
        return np.zeros(0, np.float32)
    if task.is_binary:
        return np.abs(probs[:, task.class_names.index(task.positive_class)] - threshold)
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def own_offsets(model_bias: list[float] | tuple[float, ...] | None, n_classes: int) -> list[float]:
    """A model's log-probability offsets, one per class (metadata `class_bias`; none: zeros)."""
    return [float(b) for b in model_bias] if model_bias else [0.0] * n_classes


def with_offset(model_bias: list[float] | None, n_classes: int, index: int,
                value: float) -> tuple[float, ...] | None:
    """A model's log-probability offsets with class `index`'s set to `value`; None when that is the
    model's own, so callers keep using the model as it is."""
    bias = own_offsets(model_bias, n_classes)
    if round(bias[index], 2) == round(float(value), 2):
        return None
    bias[index] = round(float(value), 4)
    return tuple(bias)


def offsets_from_specs(specs: list[str], task: Task, model_bias: list[float] | None) -> tuple[float, ...] | None:
    """The offsets that `CLASS=VALUE` settings ask for (`--offset neutral=0.4`), the model's own for the
    other classes; None when nothing is asked. ValueError with the reason for a bad setting."""
    if not specs:
        return None
    if task.is_binary:
        raise ValueError(f"class offsets apply to tasks that pick the likeliest class; '{task.name}' uses a threshold")
    bias = own_offsets(model_bias, task.n_classes)
    for spec in specs:
        name, _, value = spec.partition("=")
        if name not in task.class_names:
            raise ValueError(f"offset '{spec}': the classes are {', '.join(task.class_names)} (CLASS=VALUE)")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"offset '{spec}': '{value}' is not a number (CLASS=VALUE)") from None
        if not -5.0 <= v <= 5.0:
            raise ValueError(f"offset '{spec}': keep it between -5 and 5 (it is added to a log-probability)")
        bias[task.class_names.index(name)] = v
    return tuple(bias)


def decision_options(task: Task, model_bias: list[float] | None, threshold: float | None,
                     offsets: list[str]) -> tuple[float | None, tuple[float, ...] | None]:
    """A command line's decision rule (`--threshold` for a binary task, `--offset CLASS=V` for one that
    picks the likeliest class) as (threshold, class offsets), None for the model's own; ValueError with
    the reason for an option the task cannot take."""
    if threshold is not None:
        if not task.is_binary:
            raise ValueError(f"--threshold applies to binary tasks; '{task.name}' picks the likeliest class")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"--threshold must be between 0 and 1, not {threshold}")
    try:
        return threshold, offsets_from_specs(offsets, task, model_bias)
    except ValueError as exc:
        raise ValueError(f"--offset: {exc}") from None
