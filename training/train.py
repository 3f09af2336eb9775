"""Train a Grin model: `python -m training.train --task smile --data <dir> --out <run dir>`.

Every epoch appends a line to metrics.jsonl, saves a resumable checkpoint and, when validation
accuracy improves, the best model (float32, with metadata) - all written atomically.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.fileio import write_json_atomic
from core.model import MODEL_FILE, ModelMeta
from core.progress import ProgressBar
from core.portable import portable_command, portable_paths
from core.runtime import machine_summary, quiet_command, tensorflow
from training.baselines import BASELINES, train_baseline
from training.config import ConfigError, TrainConfig
from training.epoch_log import RunLogger, save_model_atomic, val_confusion
from training.lineage import inherited_threshold, init_record, load_init_weights, teacher_record
from training.optimizer import make_optimizer
from training.precision import float32_copy, set_precision
from training.runs import CHECKPOINT, CHECKPOINT_STATE, CONFIG, EVAL, METRICS, Run
from training.swa import SWA_FILE, WeightAverage, recalibrate_batch_norm
from training.train_args import parse_args


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
        # the model deblocks as its compressed training faces were: served crops get the same gated blur
        pp = replace(task_preprocess(task, cfg.input_size, cfg.equalize), deblock=cfg.augment.deblock)
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
