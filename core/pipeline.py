"""Frame in, labelled faces out: detector + shared preprocessing + classifier."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from core.decision import decide
from core.detect import Box, FaceDetector
from core.model import Classifier
from core.preprocess import crop_faces
from core.tasks import Task


@dataclass
class Face:
    box: Box
    probs: np.ndarray          # one probability per class, in task order
    index: int                 # predicted class
    task: Task

    @property
    def class_name(self) -> str:
        return self.task.class_names[self.index]

    @property
    def label(self) -> str:
        return self.task.display_names[self.index]

    @property
    def score(self) -> float:
        return float(self.probs[self.index])

    def as_row(self) -> dict:
        x, y, w, h = self.box
        row = {"x": x, "y": y, "width": w, "height": h, "label": self.label, "probability": round(self.score, 4)}
        row.update({f"p_{c}": round(float(p), 4) for c, p in zip(self.task.class_names, self.probs)})
        return row


@dataclass
class Timing:
    detect_ms: float = 0.0
    classify_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.detect_ms + self.classify_ms


@dataclass
class Pipeline:
    classifier: Classifier
    detector: FaceDetector = field(default_factory=FaceDetector)
    threshold: float | None = None   # None: the model's own threshold
    class_bias: tuple[float, ...] | None = None   # offsets on the log-probabilities; None: the model's own
    last_timing: Timing = field(default_factory=Timing)

    @property
    def task(self) -> Task:
        return self.classifier.task

    def classify(self, image: np.ndarray, boxes: list[Box], view: int | None = None) -> list[Face]:
        """Label given boxes in one batched model call (`view`: one test-time view only, see Classifier)."""
        t0 = time.perf_counter()
        crops = crop_faces(image, boxes, self.classifier.preprocess)
        threshold = self.classifier.meta.threshold if self.threshold is None else self.threshold
        probs = self.classifier.predict(crops, view=view, threshold=threshold, class_bias=self.class_bias)
        idx = decide(probs, self.task, threshold)
        self.last_timing.classify_ms = (time.perf_counter() - t0) * 1000
        return [Face(tuple(int(v) for v in b), p, int(i), self.task) for b, p, i in zip(boxes, probs, idx)]

    def __call__(self, image: np.ndarray, thorough: bool = False) -> list[Face]:
        """Detect and label every face of an RGB frame (`thorough`: for photos, see FaceDetector)."""
        t0 = time.perf_counter()
        boxes = self.detector.detect(image, thorough=thorough)
        detect_ms = (time.perf_counter() - t0) * 1000
        faces = self.classify(image, boxes)
        self.last_timing.detect_ms = detect_ms
        return faces
