"""A small learning-curves picture (loss and accuracy per epoch) drawn with OpenCV, for model cards."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from core.imageio import encode_png

TRAIN_RGB, VAL_RGB = (31, 119, 180), (255, 127, 14)   # the usual blue and orange
INK, GRID = (40, 40, 40), (225, 225, 225)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class PlotConfig:
    panel_w: int = 380
    panel_h: int = 260
    margin_l: int = 52
    margin_r: int = 14
    margin_t: int = 30
    margin_b: int = 40


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["epoch"], r[key]) for r in rows
           if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and "epoch" in r]
    if not pts:
        return np.zeros(0), np.zeros(0)
    e, v = zip(*pts)
    return np.asarray(e, float), np.asarray(v, float)


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}"


def _panel(rows: list[dict], title: str, keys: tuple[str, str], cfg: PlotConfig) -> np.ndarray:
    img = np.full((cfg.panel_h, cfg.panel_w, 3), 255, np.uint8)
    x0, x1 = cfg.margin_l, cfg.panel_w - cfg.margin_r
    y0, y1 = cfg.margin_t, cfg.panel_h - cfg.margin_b
    series = [(_series(rows, k), c, name) for k, c, name in
              ((keys[0], TRAIN_RGB, "train"), (keys[1], VAL_RGB, "validation"))]
    xs = np.concatenate([s[0][0] for s in series])
    ys = np.concatenate([s[0][1] for s in series])
    cv2.putText(img, title, (x0, 20), FONT, 0.5, INK, 1, cv2.LINE_AA)
    if len(xs) == 0:
        cv2.putText(img, "no data", (x0 + 10, (y0 + y1) // 2), FONT, 0.5, INK, 1, cv2.LINE_AA)
        return img
    e_lo, e_hi = float(xs.min()), float(max(xs.max(), xs.min() + 1))
    v_lo, v_hi = float(ys.min()), float(ys.max())
    pad = max((v_hi - v_lo) * 0.08, 0.02)
    v_lo, v_hi = v_lo - pad, v_hi + pad

    def to_px(e: np.ndarray, v: np.ndarray) -> np.ndarray:
        px = x0 + (e - e_lo) / (e_hi - e_lo) * (x1 - x0)
        py = y1 - (v - v_lo) / (v_hi - v_lo) * (y1 - y0)
        return np.stack([px, py], 1).round().astype(np.int32)

    for i in range(5):  # horizontal grid lines with value labels
        v = v_lo + (v_hi - v_lo) * i / 4
        y = int(round(y1 - (y1 - y0) * i / 4))
        cv2.line(img, (x0, y), (x1, y), GRID, 1)
        cv2.putText(img, _fmt(v), (4, y + 4), FONT, 0.35, INK, 1, cv2.LINE_AA)
    n_ticks = min(6, int(e_hi - e_lo) + 1)
    for e in np.unique(np.linspace(e_lo, e_hi, n_ticks).round()):
        x = int(to_px(np.array([e]), np.array([v_lo]))[0, 0])
        cv2.line(img, (x, y1), (x, y1 + 4), INK, 1)
        cv2.putText(img, str(int(e)), (x - 5, y1 + 16), FONT, 0.35, INK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), INK, 1)
    cv2.putText(img, "epoch", ((x0 + x1) // 2 - 18, cfg.panel_h - 6), FONT, 0.4, INK, 1, cv2.LINE_AA)
    lx = x1 - 150
    for (e, v), color, name in series:
        if len(e):
            pts = to_px(e, v)
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, color, 2, cv2.LINE_AA)
            for p in pts:
                cv2.circle(img, (int(p[0]), int(p[1])), 3, color, -1, cv2.LINE_AA)
        cv2.line(img, (lx, 16), (lx + 16, 16), color, 2, cv2.LINE_AA)   # legend, in the title row
        cv2.putText(img, name, (lx + 20, 20), FONT, 0.4, INK, 1, cv2.LINE_AA)
        lx += 60
    return img


def learning_curves_image(rows: list[dict], cfg: PlotConfig | None = None) -> np.ndarray:
    """RGB image: loss (left) and accuracy (right), training and validation, per epoch."""
    cfg = cfg or PlotConfig()
    return np.concatenate([_panel(rows, "loss", ("loss", "val_loss"), cfg),
                           _panel(rows, "accuracy", ("accuracy", "val_accuracy"), cfg)], axis=1)


def learning_curves_png(rows: list[dict], cfg: PlotConfig | None = None) -> bytes:
    """The learning-curves image as PNG bytes (a few kB)."""
    return encode_png(learning_curves_image(rows, cfg))
