"""Several trained models of one task as one averaged model folder, chosen on validation:
`python -m training.ensemble --members models/expression runs/expression-b --out <folder> [--crops corners]`.

The members' probabilities are averaged inside a single Keras model, so the result is an ordinary
model folder: every command, page and test loads it like any other, and its latency is the
latency `python -m bench` reports for it. With `--average weights` the members (one architecture,
fine-tuned from one another) become one network whose weights are their mean: a weight-space
ensemble (WiSE-FT, Wortsman et al., 2022) at one member's size and speed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.fileio import write_json_atomic
from core.model import CORNER_CROPS, MODEL_FILE, Classifier, ModelError, ModelMeta
from core.portable import portable_command, portable_path
from core.runtime import quiet_command
from training.config import ConfigError
from training.epoch_log import save_model_atomic
from training.train import tune_threshold

CROP_SETS = {"none": [], "corners": CORNER_CROPS}
AVERAGES = ("probabilities", "weights")


def build_ensemble(members: list[Path]):
    """One Keras model whose output is the mean of the members' probabilities."""
    import keras

    models = []
    for i, folder in enumerate(members):
        m = keras.saving.load_model(Path(folder) / MODEL_FILE, safe_mode=True, compile=False)
        m.name = f"member_{i}"  # unique names keep each member's weights apart in the saved file
        models.append(m)
    shapes = {tuple(m.input_shape) for m in models}
    if len(shapes) != 1:
        raise ConfigError(f"members take different inputs: {sorted(shapes)}")
    inp = keras.Input(models[0].input_shape[1:], name="face")
    out = keras.layers.Average(name="mean_probabilities")([m(inp) for m in models])
    return keras.Model(inp, out, name=f"ensemble_of_{len(models)}")


def average_weights(members: list[Path]):
    """The first member's network with every weight (batch-norm statistics too) the mean of the members'."""
    import keras

    models = [keras.saving.load_model(Path(f) / MODEL_FILE, safe_mode=True, compile=False) for f in members]
    shapes = [[w.shape for w in m.get_weights()] for m in models]
    if any(s != shapes[0] for s in shapes[1:]) or len({len(m.layers) for m in models}) != 1:
        raise ConfigError("--average weights needs members of one architecture (the same layers and weight shapes)")
    weights = [m.get_weights() for m in models]
    models[0].set_weights([np.mean(np.stack([w[i] for w in weights]).astype(np.float64), axis=0).astype(ws.dtype)
                           for i, ws in enumerate(weights[0])])
    return models[0]


def member_metas(members: list[Path]) -> list[ModelMeta]:
    """Each member's metadata, checked to be of one task and one preprocessing."""
    metas = [ModelMeta.load(Path(f)) for f in members]
    for f, m in zip(members, metas):
        m.validate()
        if (m.task, m.preprocess_config, m.extra.get("split")) != (metas[0].task, metas[0].preprocess_config,
                                                                   metas[0].extra.get("split")):
            raise ConfigError(f"{f}: task, preprocessing or data split differs from {members[0]}")
    return metas


def make_ensemble(members: list[str | Path], out: str | Path, crops: str = "first", command: str = "",
                  average: str = "probabilities") -> Path:
    """Write the ensemble model folder `out` (model.keras + metadata.json). `crops`: a set of CROP_SETS,
    or "first" for the first member's own test-time crops."""
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two members")
    if crops not in (*CROP_SETS, "first"):
        raise ConfigError(f"--crops must be one of {sorted(CROP_SETS) + ['first']}")
    if average not in AVERAGES:
        raise ConfigError(f"--average must be one of {list(AVERAGES)}")
    members = [Path(m) for m in members]
    metas = member_metas(members)
    first = metas[0]
    by_weights = average == "weights"
    model = average_weights(members) if by_weights else build_ensemble(members)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_model_atomic(model, out / MODEL_FILE)
    arch = first.arch if by_weights else f"ensemble of {len(members)} x {first.arch}"
    # a prior correction is fitted to one network's probabilities: kept only when every member has the same
    bias = first.class_bias if all(m.class_bias == first.class_bias for m in metas) else []
    meta = replace(first, arch=arch, tta_crops=first.tta_crops if crops == "first" else CROP_SETS[crops],
                   class_bias=bias, metrics={}, command=command, created=dt.datetime.now().isoformat(timespec="seconds"),
                   extra={**{k: v for k, v in first.extra.items() if k in ("split", "data")},
                          "n_params": int(model.count_params()),
                          "precision": first.extra.get("precision"),
                          "average": average,
                          "ensemble": [{"folder": portable_path(f), "arch": m.arch, "command": m.command,
                                        "created": m.created, "metrics": m.metrics,
                                        "n_params": m.extra.get("n_params"),
                                        "train_config": m.extra.get("train_config"),
                                        "swa": m.extra.get("swa"),
                                        **_copy_training_records(f, m, out)}
                                       for f, m in zip(members, metas)]})
    if by_weights:   # one network of the members' architecture: --init reads its settings from here
        meta.extra["train_config"] = first.extra.get("train_config")
        if any(m.metrics.get("fit_val") for m in metas):
            meta.metrics = {"fit_val": True}   # a member trained on the validation faces, so the mean did too
    meta.save(out)
    return out


def _copy_training_records(member: Path, meta: ModelMeta, out: Path) -> dict:
    """Copy a member's learning curves (its metrics.jsonl and the files its --init chain and its own members
    name) into the ensemble folder, so its card keeps how each member was trained."""
    record: dict = {"machine": meta.extra.get("machine"), "precision": meta.extra.get("precision")}
    if (member / "metrics.jsonl").is_file():
        record["metrics_file"] = _carry(member / "metrics.jsonl", out)
    if isinstance(meta.extra.get("init"), dict):
        record["init"] = _carried_records(meta.extra["init"], member, out)
    if meta.extra.get("ensemble"):     # a member that is itself an ensemble: its members' records
        record["average"] = meta.extra.get("average")
        record["members"] = _carried_records(meta.extra["ensemble"], member, out)
    return record


def _carry(path: Path, out: Path) -> str:
    """Copy a learning-curve file into `out` under a name made from its content (metrics_<sha256 prefix>.jsonl):
    the same curves keep one name however many averages deep they are carried."""
    data = path.read_bytes()
    name = f"metrics_{hashlib.sha256(data).hexdigest()[:12]}.jsonl"
    if not (out / name).exists():
        (out / name).write_bytes(data)
    return name


def _carried_records(value, member: Path, out: Path):
    """A copy of `value` (a member's ensemble or --init records) with each metrics file it names carried into `out`."""
    if isinstance(value, list):
        return [_carried_records(v, member, out) for v in value]
    if isinstance(value, dict):
        value = {k: _carried_records(v, member, out) for k, v in value.items()}
        name = value.get("metrics_file")
        if isinstance(name, str) and (member / name).is_file():
            value["metrics_file"] = _carry(member / name, out)
    return value


def choose_and_score(members: list[Path], out: Path, data: str) -> list[dict]:
    """Validation figures for every member and for the ensemble with and without its crops; a binary
    task's threshold tuned on validation; then the test split evaluated for the record (as a training
    run does), never used to choose. Updates the ensemble's metadata and writes its eval.json."""
    from training.data import prepare
    from training.evaluate import evaluate_arrays
    from training.split import SplitConfig

    meta = ModelMeta.load(out)
    task = meta.validate()
    prep = prepare(task.name, data, SplitConfig(**meta.extra.get("split", {})))
    va, te = prep.parts["val"], prep.parts["test"]
    rows = []
    for folder in [*members, out]:
        for crops in (False, True) if ModelMeta.load(folder).tta_crops else (False,):
            clf = Classifier(folder, warm_up=False, crops=crops, exact=True)
            if folder == out and task.is_binary:
                clf.meta.threshold = meta.threshold = tune_threshold(clf.predict(va.x), va.y, task)
            ev = evaluate_arrays(clf, va.x, va.y)
            rows.append({"model": portable_path(folder), "crops": crops, "val_accuracy": ev["accuracy"],
                         "val_balanced_accuracy": ev["balanced_accuracy"],
                         "classify_ms_per_face": ev["classify_ms_per_face"]})
    meta.metrics = {**meta.metrics, "val_accuracy": rows[-1]["val_accuracy"]}   # keeps a weight average's fit_val
    meta.extra["validation"] = rows
    if len(te.y):
        result = evaluate_arrays(Classifier(out, warm_up=False, exact=True), te.x, te.y, meta.threshold)
        result["split"] = "test"
        write_json_atomic(out / "eval.json", result)
        meta.metrics.update(test_accuracy=result["accuracy"], test_balanced_accuracy=result["balanced_accuracy"])
    meta.save(out)
    return rows


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m training.ensemble", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("--members", nargs="+", required=True, help="model or run folders of one task")
    p.add_argument("--out", required=True, help="the ensemble's model folder")
    p.add_argument("--crops", default="first", choices=[*sorted(CROP_SETS), "first"],
                   help="extra test-time views: the four corner crops (ten-crop test with flip averaging), "
                   "none, or the first member's own (default: %(default)s)")
    p.add_argument("--average", default="probabilities", choices=AVERAGES,
                   help="what is averaged: the members' probabilities (one model of all members), or their "
                   "weights (one network of one member's size: members of one architecture, fine-tuned from "
                   "one another; default: %(default)s)")
    p.add_argument("--data", help="dataset: validation figures for the members and the ensemble (and a "
                   "binary task's threshold tuned on validation); the test split is then evaluated for the record")
    p.add_argument("--json", help="write those validation figures here")
    args = p.parse_args(argv)
    command = portable_command(["python", "-m", "training.ensemble", *(sys.argv[1:] if argv is None else argv)])
    try:
        out = make_ensemble(args.members, args.out, args.crops, command, args.average)
        print(f"wrote {out}")
        if args.data:
            rows = choose_and_score([Path(m) for m in args.members], out, args.data)
            for r in rows:
                print(f"{r['model']:<40} crops={'yes' if r['crops'] else 'no ':<4} val {r['val_accuracy']:.2%} "
                      f"balanced {r['val_balanced_accuracy']:.2%}  {r['classify_ms_per_face']:.2f} ms/face")
            if args.json:
                write_json_atomic(Path(args.json), {"validation": rows})
    except (ConfigError, ModelError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
