"""Train a Grin model: `python -m training.train --task smile --data <dir> --out <run dir>`.

Every epoch appends a line to metrics.jsonl, saves a resumable checkpoint and, when validation
accuracy improves, the best model (float32, with metadata) - all written atomically.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from core.fileio import append_jsonl, write_json_atomic
from core.model import MODEL_FILE, ModelError, ModelMeta
from core.preprocess import EQUALIZE, MAX_INPUT, MIN_INPUT
from core.progress import ProgressBar
from core.portable import portable_command, portable_path, portable_paths
from core.runtime import BF16_CPU_FLAGS, cpu_flags, gpu_count, machine_summary, quiet_command, tensorflow
from core.tasks import TASKS
from training.baselines import BASELINES, train_baseline
from training.card_data import training_minutes
from training.config import Augment, ConfigError, TrainConfig
from training.runs import CHECKPOINT, CHECKPOINT_STATE, CONFIG, EVAL, METRICS, Run
from training.swa import SWA_FILE, WeightAverage, recalibrate_batch_norm


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


def class_weights(y: np.ndarray, n: int, mode: str) -> dict[int, float] | None:
    """Keras class weights for `mode`; None for none, and for per-collection (row weights, below)."""
    if mode in ("none", "per-collection"):
        return None
    counts = np.maximum(np.bincount(y, minlength=n), 1).astype(float)
    w = counts.sum() / (n * counts)
    if mode == "sqrt":
        w = np.sqrt(w)
    return {i: float(v) for i, v in enumerate(w / w[np.bincount(y, minlength=n) > 0].mean())}


def collection_weights(y: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """Per-row weights that balance the classes within the main dataset and within the extra data (rows
    with negative indices), each keeping its share of the rows; they follow the true labels, so they hold
    under any distillation weight."""
    w = np.ones(len(y), np.float32)
    for rows in (index >= 0, index < 0):
        if rows.any():
            counts = np.bincount(y[rows], minlength=n)
            w[rows] = rows.sum() / (np.count_nonzero(counts) * counts[y[rows]])
    return w


def tune_threshold(probs: np.ndarray, y: np.ndarray, task) -> float:
    """The decision threshold with the best validation accuracy (ties: closest to 0.5)."""
    pos = task.class_names.index(task.positive_class)
    grid = np.round(np.arange(0.2, 0.81, 0.02), 2)
    acc = [((probs[:, pos] >= t) == (y == pos)).mean() for t in grid]
    best = max(acc)
    return float(min((t for t, a in zip(grid, acc) if a >= best - 1e-9), key=lambda t: abs(t - 0.5)))


def inherited_threshold(init: str) -> float:
    """A --fit-val run has no unseen validation faces to tune on: it keeps its --init model's threshold."""
    return ModelMeta.load(Path(init)).threshold if init else 0.5


def init_record(folder: str) -> dict | None:
    """Where a fine-tune started, for its card: the --init model's command, training minutes and own
    --init chain (metadata `init`); None when the folder has no readable metadata."""
    path = Path(folder)
    try:
        meta = ModelMeta.load(path)
    except ModelError:
        return None
    out = re.search(r"--out[ =](\S+)", meta.command)
    run = f"run {Path(out.group(1)).name}" if out else "a model"
    minutes = training_minutes(path)
    record = {"folder": f"{run}, {portable_path(path)} as of {meta.created[:10] or 'an unrecorded day'}",
              "command": meta.command or "not recorded", "minutes": round(minutes, 1) if minutes else None}
    if meta.extra.get("ensemble"):
        record["folder"] += " (an ensemble: its metadata lists the members)"
    if isinstance(meta.extra.get("init"), dict):
        record["init"] = meta.extra["init"]
    return record


def teacher_record(folder: str) -> dict:
    """Which model taught a run, as it was when the run began (a folder like models/expression changes
    with each ship), and its task, for the card."""
    try:
        task = ModelMeta.load(Path(folder)).task
    except ModelError:
        task = ""
    record = init_record(folder)
    return {"folder": record["folder"] if record else portable_path(Path(folder)), "task": task}


def load_init_weights(model, folder: str) -> None:
    """Copy weights from another model of the same architecture and width. The classes may differ
    (another task: transfer learning): then the output layer alone keeps its fresh weights."""
    import keras

    source = keras.saving.load_model(Path(folder) / MODEL_FILE, safe_mode=True, compile=False)
    if len(source.layers) != len(model.layers):
        raise ConfigError(f"--init {folder}: a different architecture ({source.name}) than this run's ({model.name})")
    pairs = [(s, d) for s, d in zip(source.layers, model.layers) if d.weights]
    for i, (src, dst) in enumerate(pairs):
        weights = src.get_weights()
        theirs, ours = [w.shape for w in weights], [w.shape for w in dst.get_weights()]
        if theirs == ours:
            dst.set_weights(weights)
        elif i < len(pairs) - 1:   # anything but the output layer: not the same network
            raise ConfigError(f"--init {folder}: its layer '{src.name}' has weights of shape {theirs}, this "
                              f"run's {ours}: build it with the same --width as that model")


def auto_precision(has_gpu: bool, flags: set[str]) -> str:
    """float16 on a GPU; bfloat16 on a CPU with bfloat16 instructions (1.4-2x faster there); else
    float32: without them bfloat16 is emulated (10x slower, measured on an AVX2-only AMD EPYC)."""
    if has_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if flags & BF16_CPU_FLAGS else "float32"


def set_precision(precision: str) -> str:
    """Set the Keras dtype policy; "auto" chooses for the machine (`auto_precision`)."""
    import keras

    if precision == "auto":
        precision = auto_precision(gpu_count() > 0, cpu_flags())
    keras.config.set_dtype_policy(precision)
    return precision


def make_optimizer(cfg: TrainConfig):
    import keras

    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay or None)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.lr)
    return keras.optimizers.AdamW(cfg.lr, weight_decay=cfg.weight_decay)


def make_dataset(part, n_classes, cfg: TrainConfig, training: bool, size: int, soft: np.ndarray | None = None):
    """A tf.data pipeline of (float images, targets); wide crops (`part.context` set) are cut to
    `size`, more loosely at random when training. Targets are one-hot labels, blended with a
    teacher's probabilities `soft` (one row per face) when distilling. Training drops each epoch's last
    partial batch (the rows reshuffle, so every face is still seen): a batch of a face or two gives batch
    normalisation noise, and oneDNN's convolution gradient has crashed the process on some such sizes."""
    from training.augment import make_augmenter, make_loose_cropper, make_tight_cropper
    from training.distill import blend_targets, teacher_rows

    tf = tensorflow()
    wide = part.context is not None
    y = np.eye(n_classes, dtype=np.float32)[part.y]
    if soft is not None:   # the rows the teacher teaches (--distill-on); the others keep their true labels
        taught = teacher_rows(part.index, cfg.distill_on)
        y[taught] = blend_targets(y[taught], soft[taught].astype(np.float32), cfg.distill)
    weighted = training and cfg.class_weights == "per-collection"
    columns = (part.x, part.context, y) if wide else (part.x, y)
    if weighted:
        columns += (collection_weights(part.y, part.index, n_classes),)

    def carry(fn):   # each map sees (images, [context,] targets); a row weight rides along untouched
        return (lambda *t: (*fn(*t[:-1]), t[-1])) if weighted else fn

    ds = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        ds = ds.shuffle(len(part.y), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size, drop_remainder=training and len(part.y) > cfg.batch_size)
    if wide:
        crop = make_loose_cropper(cfg.augment.loose if training else 0.0, size, cfg.seed)
        ds = ds.map(carry(lambda a, c, b: crop(tf.cast(a, tf.float32), c, b)), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(carry(lambda a, b: (tf.cast(a, tf.float32), b)), num_parallel_calls=tf.data.AUTOTUNE)
    if training and cfg.augment.tight:
        ds = ds.map(carry(make_tight_cropper(cfg.augment.tight, size, cfg.seed)), num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.map(carry(make_augmenter(cfg.augment, size, cfg.seed)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def float32_copy(model, cfg: TrainConfig, input_shape, n_classes):
    """The same network in float32 for serving (faster on this CPU than bfloat16)."""
    import keras

    from training.architectures import build_model

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        fresh = build_model(cfg.resolved_arch(), input_shape, n_classes, cfg.width or None, cfg.dropout, cfg.l2)
    finally:
        keras.config.set_dtype_policy(policy)
    fresh.set_weights(model.get_weights())
    return fresh


def save_model_atomic(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def val_confusion(model, part, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows: true) of the bare network on a split: the per-epoch selection figure."""
    probs = model.predict(part.x.astype(np.float32), batch_size=256, verbose=0)
    cm = np.zeros((n_classes, n_classes), int)
    np.add.at(cm, (part.y, probs.argmax(1)), 1)
    return cm


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


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, command: str = "", echo: bool = False) -> dict:
    """Run (or resume) training into folder `out`; returns the test evaluation. With `echo` (the command
    line), a line per epoch on stdout and progress bars on a terminal's stderr."""
    tensorflow()   # first, so that a quiet command line imports it quietly
    import keras

    from core.tasks import get_task
    from training.architectures import build_model
    from training.augment import wide_side
    from training.data import prepare, task_preprocess
    from training.evaluate import evaluate_arrays
    from training.split import SplitConfig

    run = Run(Path(out))
    run.path.mkdir(parents=True, exist_ok=True)
    if resume:
        if not run.file(CHECKPOINT).is_file():
            raise ConfigError(f"{out}: no checkpoint to resume from")
        cfg = TrainConfig.from_dict(json.loads(run.file(CONFIG).read_text())["config"])
    elif run.file(CHECKPOINT).is_file() or run.file(METRICS).is_file():
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it, or choose another folder")
    else:
        cfg.resolve_from_init()   # before config.json is written, so a later --init from this run finds it
    cfg.validate()   # after a resume has read the run's own settings
    run.file("STOP").unlink(missing_ok=True)
    command = command or portable_command(["python", "-m", "training.train", *sys.argv[1:]])
    if resume:   # the command that set the run up, then how it was continued
        command = f"{run.config().get('command', '')} (resumed with: {command})".strip()
    if not resume:
        write_json_atomic(run.file(CONFIG), {"config": cfg.to_dict(), "command": command,
                                             "created": dt.datetime.now().isoformat(timespec="seconds")})
    run.set_status(state="preparing", pid=os.getpid(), epoch=0, epochs=cfg.epochs, message="reading data")
    try:
        keras.utils.set_random_seed(cfg.seed)
        precision = set_precision(cfg.precision)
        split_cfg = SplitConfig(cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        task = get_task(cfg.task)
        pp = task_preprocess(task, cfg.input_size, cfg.equalize)
        size = pp.input_size
        faces_bar = ProgressBar("detecting faces", enabled=None if echo else False)
        prep = prepare(cfg.task, cfg.data, split_cfg, cfg.faces, cfg.extra_data, cfg.limit,
                       progress=lambda m: run.set_status(message=m), fit_val=cfg.fit_val,
                       wide_side=wide_side(size) if cfg.augment.loose else 0, fer_negatives=cfg.fer_negatives,
                       input_size=cfg.input_size, equalize=cfg.equalize, faces_progress=faces_bar)
        faces_bar.close()
        if len(prep.parts["train"].y) == 0 or len(prep.parts["val"].y) == 0:
            raise ConfigError("the dataset is too small to split into training and validation sets")
        if cfg.resolved_arch() in BASELINES:
            result = train_baseline(cfg.resolved_arch(), prep, run, cfg.seed)
            run.set_status(state="finished", message="finished", test_accuracy=result.get("accuracy"), pid=None)
            return result
        meta = ModelMeta(task=task.name, class_names=list(task.class_names), preprocess=pp.to_dict(),
                         arch=cfg.resolved_arch(), tta_flip=cfg.tta_flip, command=command,
                         created=dt.datetime.now().isoformat(timespec="seconds"),
                         extra={"split": split_cfg.to_dict(), "data": portable_paths(prep.summary()),
                                "precision": precision, "train_config": portable_paths(cfg.to_dict()),
                                "machine": machine_summary()})
        # the card's "how it was trained" goes back through the --init model (as it was when the run began)
        before = ModelMeta.load(run.path).extra if resume and run.has_model() else {}
        origin = before.get("init") or (init_record(cfg.init) if cfg.init else None)
        if origin:
            meta.extra["init"] = origin
        teachers = before.get("teachers") or [teacher_record(t) for t in cfg.teacher]
        if teachers:
            meta.extra["teachers"] = teachers
        strategy = _strategy()
        with strategy.scope():
            if resume:
                model = keras.saving.load_model(run.file(CHECKPOINT), safe_mode=True)
                state = json.loads(run.file(CHECKPOINT_STATE).read_text())
                initial_epoch, best = int(state["epoch"]), float(state["best"])
            else:
                model = build_model(cfg.resolved_arch(), pp.input_shape, task.n_classes,
                                    cfg.width or None, cfg.dropout, cfg.l2)
                if cfg.init:
                    load_init_weights(model, cfg.init)
                model.compile(optimizer=make_optimizer(cfg),
                              loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                              metrics=["accuracy"])
                initial_epoch, best = 0, -1.0
        n_params = model.count_params()
        meta.extra["n_params"] = int(n_params)
        tr, va = prep.parts["train"], prep.parts["val"]
        if cfg.main_repeat > 1:  # main-dataset rows have index >= 0, extra-data rows < 0
            rows = np.concatenate([np.arange(len(tr.y))] + [np.flatnonzero(tr.index >= 0)] * (cfg.main_repeat - 1))
            tr = tr.take(rows)
        run.set_status(state="running", epoch=initial_epoch, message=f"training {n_params:,} parameters on "
                       f"{len(tr.y)} faces", summary=prep.summary())
        logger = RunLogger(run, cfg, prep, meta, best, echo)
        t_start = time.time()
        soft = None
        if cfg.teacher:
            from training.distill import mean_teacher_probs

            soft = mean_teacher_probs(cfg.teacher, tr.x, run.path,
                                      lambda t, i, n: run.set_status(message=f"{t} labelling faces {i}/{n}"),
                                      task=task, input_size=size)
            run.set_status(message=f"training {n_params:,} parameters on {len(tr.y)} faces, "
                                   f"distilling from {' and '.join(cfg.teacher)}")
        if initial_epoch < cfg.epochs:
            model.fit(make_dataset(tr, task.n_classes, cfg, True, size, soft),
                      validation_data=make_dataset(va, task.n_classes, cfg, False, size),
                      epochs=cfg.epochs, initial_epoch=initial_epoch,
                      class_weight=class_weights(tr.y, task.n_classes, cfg.class_weights),
                      callbacks=[logger], verbose=0)
        stopped = run.stop_requested()
        if not run.has_model():
            raise RuntimeError("training ended before the first epoch finished: no model was saved")
        from core.model import Classifier

        if cfg.swa_epochs and not stopped:
            run.set_status(message="averaging weights (SWA)")
            finish_swa(run, cfg, prep, model, tr, logger.best)
        meta = ModelMeta.load(run.path)
        clf = Classifier(run.path, warm_up=False, exact=True)
        if task.is_binary:
            meta.threshold = (inherited_threshold(cfg.init) if cfg.fit_val
                              else tune_threshold(clf.predict(va.x), va.y, task))
            meta.save(run.path)
            clf.meta.threshold = meta.threshold
        result = {}
        te = prep.parts["test"]
        if len(te.y) and not cfg.skip_test:
            result = evaluate_arrays(clf, te.x, te.y)
            result["split"] = "test"
            result["train_seconds"] = round(time.time() - t_start, 1)
            write_json_atomic(run.file(EVAL), result)
            meta.metrics.update({"test_accuracy": result["accuracy"],
                                 "test_balanced_accuracy": result["balanced_accuracy"]})
            meta.save(run.path)
        run.set_status(state="stopped" if stopped else "finished", message="stopped by request" if stopped
                       else "finished", test_accuracy=result.get("accuracy"), pid=None)
        return result
    except BaseException as exc:
        state = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        if echo and state == "failed":   # the reason reaches train.log before the status says "failed"
            print(f"error: {exc}", file=sys.stderr, flush=True)
            exc.logged = True
        run.set_status(state=state, message=f"{type(exc).__name__}: {exc}", pid=None)
        raise


def finish_swa(run: Run, cfg: TrainConfig, prep, model, train_part, best: float) -> dict:
    """Average the last epochs' weights, recompute batch-norm statistics on the training data, and
    keep the average as the run's model when its validation accuracy beats the best single epoch."""
    avg = WeightAverage(run.file(SWA_FILE))
    if not avg.count:
        return {}
    va, n_classes = prep.parts["val"], prep.task.n_classes
    swa = float32_copy(model, cfg, va.x.shape[1:], n_classes)
    swa.set_weights(avg.mean())
    n_batches = recalibrate_batch_norm(swa, make_dataset(train_part, n_classes, cfg, True, va.x.shape[1]))
    cm = val_confusion(swa, va, n_classes)
    val_acc = float(np.trace(cm) / max(1, cm.sum()))
    info = {"epochs": avg.epochs, "val_accuracy": val_acc, "best_single_epoch_val_accuracy": best,
            "bn_batches": n_batches, "used": val_acc > best}
    meta = ModelMeta.load(run.path)
    if info["used"]:
        save_model_atomic(swa, run.file(MODEL_FILE))
        meta.metrics = {"val_accuracy": val_acc, "epoch": max(avg.epochs), "swa": True}
    meta.extra["swa"] = info
    meta.save(run.path)
    return info


def _strategy():
    """Mirrored across GPUs when several are visible; the default strategy otherwise."""
    tf = tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _setting(group, defaults, name: str, text: str) -> None:
    """An option for a config field: its type and default come from the dataclass."""
    value = getattr(defaults, name)
    group.add_argument(_flag(name), type=type(value), default=value,
                       help=f"{text} (default: %(default)s)".lstrip())


def build_parser() -> argparse.ArgumentParser:
    """The command line, every option with its help and default."""
    from training.architectures import ARCHITECTURES, DEFAULT_WIDTH
    from training.config import CLASS_WEIGHTS, DISTILL_ON, OPTIMIZERS, PRECISIONS, SCHEDULES

    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m training.train", description=__doc__.splitlines()[0],
        epilog="Every setting is checked before a run starts. The shipped models' exact commands are in "
               "models/<task>/README.md.")
    run = p.add_argument_group("run")
    _setting(run, d, "task", " or ".join(TASKS))
    run.add_argument("--data", default="", help="dataset folder (or fer2013.csv)")
    run.add_argument("--extra-data", action="append", default=[], help="more training data (repeatable)")
    run.add_argument("--out", required=True, help="run folder")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    run.add_argument("--max-runs", type=int, default=0,
                     help="queue: wait until fewer than this many runs in --out's folder train (0: start now)")
    run.add_argument("--init", default="",
                     help="start from this model folder's weights: a fine-tune, or transfer from the other task "
                          "(only the output layer starts fresh)")
    _setting(run, d, "limit", "use at most this many training images, for a quick run; 0 is all")
    _setting(run, d, "precision", f"{', '.join(PRECISIONS)}; auto: float16 on a GPU, bfloat16 on a CPU with "
                                  "bfloat16 instructions, else float32; models are saved in float32")

    data = p.add_argument_group("faces and split")
    _setting(data, d, "faces", "how each image becomes a face: auto, detect, cropped or whole")
    _setting(data, d, "val_fraction", "validation share carved from training")
    _setting(data, d, "test_fraction", "test share, for datasets without an official test split")
    _setting(data, d, "split_seed", "seed of the split; keep it to compare or ensemble runs")
    _setting(data, d, "main_repeat", "with --extra-data: show the main dataset's training faces this many times "
                                     "per epoch, 1-10")
    _setting(data, d, "fer_negatives", "smile: this fraction of FER-2013's angry, disgust, fear, sad and surprise "
                                       "faces joins as no-smile faces (with FER-2013 as --data or --extra-data)")

    net = p.add_argument_group("network")
    widths = ", ".join(f"{k} {v}" for k, v in DEFAULT_WIDTH.items())
    net.add_argument("--arch", default="", help=f"{', '.join((*ARCHITECTURES, *BASELINES))} (default: the task's; "
                                                 "baseline, hog_svm, hog_logreg and mlp are the seed reports' "
                                                 "models, for comparison)")
    _setting(net, d, "width", f"channels of the first stage; 0: the --init model's, else the architecture's "
                              f"({widths})")
    _setting(net, d, "input_size", f"side of the face crops in pixels, {MIN_INPUT}-{MAX_INPUT}; 0: the --init model's, "
                                   "else the task's (" + ", ".join(f"{t.name} {t.input_size}" for t in TASKS.values()) + ")")
    _setting(net, d, "equalize", f"contrast normalisation of each face crop, {' or '.join(EQUALIZE)}; empty: the "
                                 "--init model's, else none")
    _setting(net, d, "dropout", "before the output layer")
    _setting(net, d, "l2", "L2 penalty on the weights")

    opt = p.add_argument_group("optimisation")
    _setting(opt, d, "epochs", "")
    _setting(opt, d, "batch_size", "")
    _setting(opt, d, "optimizer", ", ".join(OPTIMIZERS))
    _setting(opt, d, "lr", "peak learning rate")
    _setting(opt, d, "schedule", f"{', '.join(SCHEDULES)}: the learning rate after the warm-up")
    _setting(opt, d, "warmup_epochs", "linear warm-up")
    _setting(opt, d, "weight_decay", "decoupled weight decay")
    _setting(opt, d, "label_smoothing", "")
    _setting(opt, d, "class_weights", f"{', '.join(CLASS_WEIGHTS)}: weigh rare classes up (sqrt: by "
                                      "1/sqrt(count); per-collection: balance the classes within the main "
                                      "dataset and within the extra data, each keeping its share)")
    _setting(opt, d, "seed", "weights, shuffling and augmentation")
    _setting(opt, d, "patience", "stop after this many epochs without a better validation accuracy; 0 is off")
    _setting(opt, d, "swa_epochs", "average the weights of the last N epochs (SWA), kept only if it validates "
                                   "better; 0 is off")
    _setting(opt, d, "swa_lr", "constant learning rate for the averaged epochs; 0: the schedule runs to the end")
    opt.add_argument("--teacher", action="append", default=[],
                     help="distil: this model folder (or ensemble) labels the training faces with its probabilities; "
                          "of the run's task, or an expression model teaching a smile run through its P(happy); "
                          "repeatable: the teachers' probabilities are averaged")
    _setting(opt, d, "distill", "weight of the teachers' probabilities in the targets, 0..1 (with --teacher)")
    opt.add_argument("--distill-on", choices=DISTILL_ON, default=d.distill_on,
                     help="the faces the teacher labels: all, or only the --extra-data collections' (the main "
                          "dataset's faces keep their true labels) (default: %(default)s)")
    opt.add_argument("--fit-val", action="store_true",
                     help="final model: train on the validation faces too, keep the last epoch, and keep the "
                          "--init model's decision threshold (choose the recipe on validation first)")

    aug = p.add_argument_group("augmentation (training faces only)")
    aug.add_argument("--no-flip", action="store_true", help="no horizontal flips")
    a = Augment()
    _setting(aug, a, "shift", "largest shift, a fraction of the side")
    _setting(aug, a, "rotate", "largest rotation in degrees")
    _setting(aug, a, "zoom", "largest zoom in or out, a fraction")
    _setting(aug, a, "brightness_contrast", "strength of random brightness and contrast")
    _setting(aug, a, "blur", "probability of a down-and-up resize (low-resolution cameras)")
    _setting(aug, a, "erasing", "probability of random erasing")
    _setting(aug, a, "mixup", "mixup alpha; 0 is off")
    _setting(aug, a, "loose", "probability of a looser framing, cut from a wider crop of the photo")
    _setting(aug, a, "tight", "probability of a tighter framing, down to the eyes-to-chin area (close-up crops)")
    _setting(aug, a, "jpeg", "probability of strong JPEG compression (quality 10-50)")
    _setting(aug, a, "jpeg_scale", "compress each face at a random scale from this fraction of its side to 1, "
                                   "as a smaller source picture is compressed before it is enlarged")

    ev = p.add_argument_group("evaluation")
    ev.add_argument("--no-tta", action="store_true", help="no flip averaging at test time")
    run.add_argument("--verbose", action="store_true", help="also show TensorFlow's and Keras's own log lines and warnings")
    ev.add_argument("--skip-test", action="store_true",
                    help="leave the test split unread at the end (while choosing a recipe on validation)")
    return p


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """The config from the command line: every option is named after its config field (two are negated)."""
    ns = build_parser().parse_args(argv)
    args = vars(ns)
    aug = Augment(flip=not args["no_flip"], **{f.name: args[f.name] for f in fields(Augment) if f.name != "flip"})
    settings = {f.name: args[f.name] for f in fields(TrainConfig) if f.name in args}
    cfg = TrainConfig(**settings, augment=aug, tta_flip=not args["no_tta"])
    return cfg, ns


def main(argv=None) -> int:
    quiet_command(argv)
    cfg, args = parse_args(argv)
    if not args.resume:
        try:
            cfg.validate()
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, lambda *_: Run(Path(args.out)).request_stop())
    if args.max_runs:
        from training.queue import wait_for_slot

        if not wait_for_slot(args.out, args.max_runs):
            return 0
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        result = train(cfg, args.out, resume=args.resume, echo=True,
                       command=portable_command(["python", "-m", "training.train", *argv]))
    except Exception as exc:
        from training.datasets import DatasetError

        if isinstance(exc, (ConfigError, DatasetError)):
            if not getattr(exc, "logged", False):
                print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    if result:
        print(json.dumps({k: result[k] for k in ("accuracy", "balanced_accuracy", "n_images")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
