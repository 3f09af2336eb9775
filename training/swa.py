"""Stochastic weight averaging: the mean of the weights of a run's last epochs, with batch-norm
statistics recomputed for the averaged weights (Izmailov et al., 2018).

The running sum is kept on disk (`swa.npz`) with the epochs it holds, so a resumed run goes on
averaging where it stopped and an epoch is never counted twice.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SWA_FILE = "swa.npz"


class WeightAverage:
    """Running mean of a model's weights over chosen epochs."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.total: list[np.ndarray] | None = None
        self.epochs: list[int] = []
        if self.path.is_file():
            with np.load(self.path) as f:
                self.epochs = [int(e) for e in f["epochs"]]
                self.total = [f[f"w{i}"] for i in range(len(f.files) - 1)]

    @property
    def count(self) -> int:
        return len(self.epochs)

    def add(self, epoch: int, weights: list[np.ndarray]) -> None:
        if epoch in self.epochs:
            return
        weights = [np.asarray(w, np.float64) for w in weights]
        self.total = weights if self.total is None else [t + w for t, w in zip(self.total, weights)]
        self.epochs.append(epoch)
        self._save()

    def mean(self) -> list[np.ndarray]:
        if not self.count:
            raise ValueError("no epochs averaged yet")
        return [(t / self.count).astype(np.float32) for t in self.total]

    def _save(self) -> None:
        tmp = self.path.with_name(f".{self.path.stem}.tmp.npz")
        arrays = {f"w{i}": w for i, w in enumerate(self.total)}
        np.savez(tmp, epochs=np.array(self.epochs), **arrays)
        os.replace(tmp, self.path)


def recalibrate_batch_norm(model, batches, max_batches: int = 200) -> int:
    """Recompute every BatchNormalization layer's moving mean and variance as the plain average
    over `batches` (images only, or (images, labels) pairs) for the model's current weights."""
    import keras

    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bn:
        return 0
    saved = [layer.momentum for layer in bn]
    n = 0
    try:
        for batch in batches:
            if n >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            n += 1
            for layer in bn:
                layer.momentum = 1.0 - 1.0 / n   # cumulative average: batch n weighs 1/n
            model(x, training=True)              # eager: each call reads the momentum afresh
    finally:
        for layer, m in zip(bn, saved):
            layer.momentum = m
    return n
