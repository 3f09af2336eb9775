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
