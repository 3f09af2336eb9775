"""The seed reports' classical baselines, from the same training command: HOG + linear SVM,
HOG + logistic regression, and an MLP on pixels (scikit-learn). They are for comparison: their
figures land in the run folder like any run's, but the app serves Keras models only."""
from __future__ import annotations

import pickle
import time

import cv2
import numpy as np

from core.fileio import append_jsonl, write_bytes_atomic, write_json_atomic
from training.metrics import classification_report
from training.runs import EVAL, METRICS, Run

BASELINES = ("hog_svm", "hog_logreg", "mlp")


def hog_features(x: np.ndarray) -> np.ndarray:
    """HOG descriptors (8-pixel cells, 2x2-cell blocks, 9 bins) of uint8 crops (N, S, S, 1)."""
    size = x.shape[1]
    hog = cv2.HOGDescriptor((size, size), (16, 16), (8, 8), (8, 8), 9)
    return np.stack([hog.compute(np.ascontiguousarray(img[:, :, 0])).ravel() for img in x])


def make_estimator(arch: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if arch == "hog_svm":
        return make_pipeline(StandardScaler(), LinearSVC(C=0.01, random_state=seed))
    if arch == "hog_logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    return make_pipeline(StandardScaler(), MLPClassifier((512, 256), early_stopping=True, random_state=seed,
                                                         max_iter=200))


def features(arch: str, x: np.ndarray) -> np.ndarray:
    return hog_features(x) if arch.startswith("hog") else x.reshape(len(x), -1).astype(np.float32) / 255.0


def scores(est, f: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities (softmax of decision values for the SVM)."""
    if hasattr(est, "predict_proba"):
        return est.predict_proba(f)
    d = est.decision_function(f)
    if d.ndim == 1:
        d = np.stack([-d, d], axis=1)
    e = np.exp(d - d.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def train_baseline(arch: str, prep, run: Run, seed: int) -> dict:
    """Fit a baseline on the prepared split and write metrics.jsonl, eval.json and the estimator."""
    t0 = time.time()
    names = list(prep.task.class_names)
    tr, va, te = prep.parts["train"], prep.parts["val"], prep.parts["test"]
    est = make_estimator(arch, seed).fit(features(arch, tr.x), tr.y)
    n = prep.task.n_classes
    val = classification_report(va.y, scores(est, features(arch, va.x), n), names)
    train_acc = float((est.predict(features(arch, tr.x)) == tr.y).mean())
    append_jsonl(run.file(METRICS), {"epoch": 1, "epochs": 1, "accuracy": train_acc, "loss": None,
                                     "val_accuracy": val["accuracy"], "val_loss": None, "lr": None,
                                     "time": round(time.time() - t0, 2), "val_confusion": val["confusion_matrix"],
                                     "best_val_accuracy": val["accuracy"], "timestamp": time.time()})
    write_bytes_atomic(run.file("baseline.pkl"), pickle.dumps(est))
    result = {}
    if len(te.y):
        result = classification_report(te.y, scores(est, features(arch, te.x), n), names)
        result.update(split="test", n_images=int(len(te.y)), arch=arch, train_seconds=round(time.time() - t0, 1))
        write_json_atomic(run.file(EVAL), result)
    return result
