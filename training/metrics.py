"""Classification metrics: accuracy, balanced accuracy, per-class P/R/F1, confusion, AUC, calibration."""
from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve, or None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y_true)) < 2:
        return None
    return round(float(roc_auc_score(y_true, score)), 4)


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error and a reliability table of the top-class confidence."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if m.any():
            acc, c = float(correct[m].mean()), float(conf[m].mean())
            ece += m.mean() * abs(acc - c)
            table.append({"bin": [round(lo, 2), round(hi, 2)], "n": int(m.sum()),
                          "confidence": round(c, 4), "accuracy": round(acc, 4)})
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-7, 1))))
    onehot = np.eye(probs.shape[1])[y_true]
    brier = float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
    return {"ece": round(float(ece), 4), "nll": round(nll, 4), "brier": round(brier, 4), "bins": table}


def classification_report(y_true: np.ndarray, probs: np.ndarray, class_names: list[str],
                          y_pred: np.ndarray | None = None) -> dict:
    """All figures as a JSON-ready dict."""
    n = len(class_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred)
    cm = confusion(y_true, y_pred, n)
    per_class, recalls = {}, []
    for i, name in enumerate(class_names):
        tp, support, predicted = cm[i, i], cm[i].sum(), cm[:, i].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[name] = {"precision": round(float(p), 4), "recall": round(float(r), 4),
                           "f1": round(float(f1), 4), "support": int(support)}
        if support:
            recalls.append(r)
    out = {
        "accuracy": round(float((y_pred == y_true).mean()), 4) if len(y_true) else 0.0,
        "balanced_accuracy": round(float(np.mean(recalls)), 4) if recalls else 0.0,
        "macro_f1": round(float(np.mean([v["f1"] for v in per_class.values()])), 4),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
        "reliability": reliability(y_true, probs) if len(y_true) else {},
    }
    if n == 2:
        out["roc_auc"] = roc_auc(y_true, probs[:, 1])
    return out
