"""A run's optimiser and its learning rate per epoch (warm-up, schedule, the SWA epochs' constant rate)."""
from __future__ import annotations

import math

from training.config import TrainConfig


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Learning rate for a (0-based) epoch: linear warm-up, then the schedule; with an SWA rate,
    the schedule ends before the averaged epochs, which train at that constant rate."""
    epochs = cfg.epochs
    if cfg.swa_epochs and cfg.swa_lr:
        if epoch >= cfg.epochs - cfg.swa_epochs:
            return cfg.swa_lr
        epochs = cfg.epochs - cfg.swa_epochs
    warmup = min(cfg.warmup_epochs, epochs - 1)   # a one-epoch run trains at full rate
    if warmup and epoch < warmup:
        return cfg.lr * (epoch + 1) / (warmup + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr * (0.1 ** (epoch // max(1, epochs // 3)))
    t = (epoch - warmup) / max(1, epochs - warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(cfg: TrainConfig):
    import keras

    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay or None)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.lr)
    return keras.optimizers.AdamW(cfg.lr, weight_decay=cfg.weight_decay)
