"""What a run records after every epoch: its metrics line, a resumable checkpoint, the best model (float32,
with metadata) and its status, all written atomically."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from core.fileio import append_jsonl, write_json_atomic
from core.model import MODEL_FILE, ModelMeta
from core.progress import ProgressBar
from training.config import TrainConfig
from training.optimizer import lr_at
from training.precision import float32_copy
from training.runs import CHECKPOINT, CHECKPOINT_STATE, METRICS, Run
from training.swa import SWA_FILE, WeightAverage


def val_confusion(model, part, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows: true) of the bare network on a split: the per-epoch selection figure."""
    probs = model.predict(part.x.astype(np.float32), batch_size=256, verbose=0)
    cm = np.zeros((n_classes, n_classes), int)
    np.add.at(cm, (part.y, probs.argmax(1)), 1)
    return cm


def save_model_atomic(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


class RunLogger:
    """Keras callback: metrics line, checkpoint, best model and status after every epoch."""

    def __new__(cls, *args, **kwargs):
        import keras

        class _Logger(keras.callbacks.Callback):
            def __init__(self, run: Run, cfg: TrainConfig, prep, meta: ModelMeta, best: float, echo: bool = False):
                super().__init__()
                self.run, self.cfg, self.prep, self.meta, self.best = run, cfg, prep, meta, best
                self.echo, self.bar = echo, ProgressBar("epoch", enabled=False)
                self.t0 = time.time()
                self.bad_epochs = 0
                self.swa = WeightAverage(run.file(SWA_FILE)) if cfg.swa_epochs else None

            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.time()
                self.model.optimizer.learning_rate.assign(lr_at(epoch, self.cfg))
                if self.echo:
                    self.bar = ProgressBar(f"epoch {epoch + 1}/{self.cfg.epochs}")

            def on_train_batch_end(self, batch, logs=None):
                self.bar(batch + 1, self.params.get("steps") or batch + 1)
                if self.run.stop_requested():
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                task = self.prep.task
                val = self.prep.parts["val"]
                cm = val_confusion(self.model, val, task.n_classes)
                val_acc = float(np.trace(cm) / max(1, cm.sum()))
                row = {
                    "epoch": epoch + 1, "epochs": self.cfg.epochs,
                    "loss": float(logs.get("loss", np.nan)), "accuracy": float(logs.get("accuracy", np.nan)),
                    "val_loss": float(logs.get("val_loss", np.nan)), "val_accuracy": val_acc,
                    "lr": float(lr_at(epoch, self.cfg)), "time": round(time.time() - self.t0, 2),
                    "val_confusion": cm.tolist(), "timestamp": time.time(),
                }
                if self.cfg.fit_val:   # the validation faces are training data: keep the last epoch
                    row["val_in_training"] = True
                improved = val_acc > self.best or self.cfg.fit_val
                if improved:
                    self.best = val_acc
                    self.bad_epochs = 0
                    best = float32_copy(self.model, self.cfg, val.x.shape[1:], task.n_classes)
                    self.meta.metrics = ({"epoch": epoch + 1, "fit_val": True} if self.cfg.fit_val
                                         else {"val_accuracy": val_acc, "epoch": epoch + 1})
                    save_model_atomic(best, self.run.file(MODEL_FILE))
                    self.meta.save(self.run.path)
                else:
                    self.bad_epochs += 1
                row["best_val_accuracy"] = self.best
                if self.swa is not None and epoch + 1 > self.cfg.epochs - self.cfg.swa_epochs:
                    self.swa.add(epoch + 1, self.model.get_weights())
                append_jsonl(self.run.file(METRICS), row)
                self.bar.close()
                if self.echo:
                    print(epoch_line(row, improved), flush=True)
                save_model_atomic(self.model, self.run.file(CHECKPOINT))
                write_json_atomic(self.run.file(CHECKPOINT_STATE), {"epoch": epoch + 1, "best": self.best})
                self.run.set_status(state="running", epoch=epoch + 1, epochs=self.cfg.epochs,
                                    best_val_accuracy=self.best)
                if self.cfg.patience and self.bad_epochs >= self.cfg.patience:
                    self.model.stop_training = True

        return _Logger(*args, **kwargs)


def epoch_line(row: dict, improved: bool) -> str:
    """The command line's own line for a finished epoch."""
    val = "in training" if row.get("val_in_training") else f"{row['val_accuracy']:.2%}" + (" (best)" if improved else "")
    return (f"epoch {row['epoch']}/{row['epochs']}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.2%}, "
            f"validation {val}, {row['time']:.0f} s")
