"""Drawing boxes, labels and probability bars on frames (in place, fast: OpenCV only)."""
from __future__ import annotations

import cv2
import numpy as np

from core.pipeline import Face

FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_faces(image: np.ndarray, faces: list[Face], bars: bool | None = None) -> np.ndarray:
    """Annotate an RGB image in place and return it. `bars`: draw all class probabilities
    (default: for tasks with more than two classes)."""
    h, w = image.shape[:2]
    thick = max(1, round(min(h, w) / 320))
    scale = max(0.4, min(h, w) / 900)
    for face in faces:
        x, y, bw, bh = face.box
        color = face.task.colors[face.index]
        cv2.rectangle(image, (x, y), (x + bw, y + bh), color, thick + 1)
        text = f"{face.label} {face.score:.0%}"
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
        ty = y - 4 if y - th - base - 4 > 0 else y + bh + th + 4
        cv2.rectangle(image, (x, ty - th - base), (x + tw + 4, ty + base), color, -1)
        cv2.putText(image, text, (x + 2, ty), FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
        if bars if bars is not None else face.task.n_classes > 2:
            _draw_bars(image, face, scale, thick)
    return image


def _draw_bars(image: np.ndarray, face: Face, scale: float, thick: float) -> None:
    """A small bar per class beside the box."""
    h, w = image.shape[:2]
    x, y, bw, bh = face.box
    row = max(10, int(bh / (face.task.n_classes + 1)))
    bar_w = max(40, bw // 2)
    left = x + bw + 6 if x + bw + 6 + bar_w + 60 < w else max(0, x - bar_w - 66)
    fs = scale * 0.8
    for i, (name, p) in enumerate(zip(face.task.display_names, face.probs)):
        top = y + i * row
        if top + row > h:
            break
        cv2.rectangle(image, (left, top + 2), (left + int(bar_w * float(p)), top + row - 2), face.task.colors[i], -1)
        cv2.rectangle(image, (left, top + 2), (left + bar_w, top + row - 2), (255, 255, 255), 1)
        org = (left + bar_w + 4, top + row - 3)
        cv2.putText(image, name[:8], org, FONT, fs, (0, 0, 0), 3, cv2.LINE_AA)   # outline: readable on light
        cv2.putText(image, name[:8], org, FONT, fs, (255, 255, 255), 1, cv2.LINE_AA)
