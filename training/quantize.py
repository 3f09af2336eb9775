"""An int8 copy of a folder's model.onnx for CPUs without bfloat16 units:
`python -m training.quantize models/expression --data <fer2013>`. Rerun it after `python -m core.export`.

ONNX Runtime's static quantisation (QDQ): int8 weights per output channel, uint8 activations whose ranges
come from the model's own training faces, read with every test-time view. The weights keep 7 bits
(`reduce_range`): on x86 CPUs without VNNI, ONNX Runtime multiplies uint8 by int8 in pairs summed into
16 bits, which saturates with full 8-bit weights (session 24 lost 3 points of FER-2013 that way). The
copy is used only while it is the quantisation of that very model.keras (its SHA-256 is recorded beside
it), and a face it reads within NEAR_TIE of another decision is read again in float32 (core.model).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from core.fileio import write_json_atomic
from core.onnx_runtime import INPUT_NAME, INT8_FILE, INT8_META, ONNX_FILE, sha256, stale_reason
from core.portable import portable_command, portable_path
from core.runtime import quiet_command


@dataclass(frozen=True)
class QuantizeConfig:
    faces: int = 500          # training faces whose activations set the uint8 ranges
    check: int = 2000         # test faces on which the int8 labels are compared with float32 (0: none)
    seed: int = 0
    batch: int = 8            # faces per calibration batch (each with every test-time view)

    def validate(self) -> None:
        if not 16 <= self.faces <= 20000:
            raise ValueError(f"faces must be 16-20000 (got {self.faces})")
        if not 0 <= self.check <= 100000:
            raise ValueError(f"check must be 0-100000 (got {self.check})")


def split_faces(clf, data: str | Path, split: str, n: int, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """n face crops of a dataset's split as the model's own preprocessing makes them, and their labels:
    a seeded sample (seed given) or evenly spaced rows (seed None)."""
    from core.detect import DetectorConfig
    from training.datasets import load_dataset
    from training.faces import extract_faces
    from training.split import split_indices

    ds = load_dataset(str(data), clf.task)
    idx = split_indices(ds, clf.meta.extra.get("split"), split)
    if len(idx) == 0:
        raise ValueError(f"{data} has no {split} faces for the {clf.task.name} task")
    if seed is None:
        idx = idx[np.linspace(0, len(idx) - 1, min(n, len(idx))).astype(int)]
    else:
        idx = np.sort(np.random.default_rng(seed).choice(idx, min(n, len(idx)), replace=False))
    part = replace(ds, samples=[ds.samples[i] for i in idx])
    fc = extract_faces(part, clf.preprocess, "auto", DetectorConfig())
    return fc.x[fc.readable], part.labels[fc.readable]


def calibrate_and_write(source: Path, target: Path, calibration: list[np.ndarray]) -> None:
    """Quantise `source` (float32 ONNX) into `target` with ranges read on the calibration batches."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        left_in_float = fold_input_scaling(prepared)
        quantize_static(str(prepared), str(target), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=left_in_float)


def fold_input_scaling(path: Path) -> list[str]:
    """Fold the model's first layer, x * scale (+ 0), into the first convolution's weights, in place (a
    quantised multiply costs a twentieth of the call). Returns the elementwise nodes before the first
    convolution that could not be folded, to be left in float32."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    head = []
    for node in graph.node:
        if node.op_type == "Conv":
            conv = node
            break
        head.append(node)
    else:
        return []
    scaling = [n for n in head if n.op_type in ("Mul", "Add", "Sub", "Div")]
    consts = [numpy_helper.to_array(inits[n.input[1]]) if len(n.input) == 2 and n.input[1] in inits else None
              for n in scaling]
    foldable = ([n.op_type for n in scaling] in (["Mul"], ["Mul", "Add"])
                and all(c is not None and c.size == 1 for c in consts)
                and (len(consts) == 1 or float(consts[1]) == 0.0)   # an offset would differ at zero-padded borders
                and conv.input[1] in inits and sum(conv.input[1] in n.input for n in graph.node) == 1)
    if not foldable:
        return [n.name for n in scaling]
    weight = inits[conv.input[1]]
    scaled = numpy_helper.to_array(weight) * consts[0].astype(np.float32)
    weight.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), weight.name))
    source, result = scaling[0].input[0], scaling[-1].output[0]
    for node in scaling:
        graph.node.remove(node)
    for node in graph.node:
        node.input[:] = [source if i == result else i for i in node.input]
    used = {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    onnx.save(model, str(path))
    return []


def agreement(folder: Path, f32: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict:
    """Labels of the folder's current int8 copy against the float32 probabilities `f32` of the faces `x`:
    read alone, and as `Classifier` serves it (near ties read again in float32)."""
    from core.decision import decide
    from core.model import Classifier

    clf = Classifier(folder, warm_up=False, runtime="int8")
    served = clf.predict(x)
    alone = clf.predict(x, reread_near_ties=False)
    lf, lq, ls = (decide(p, clf.task, clf.meta.threshold) for p in (f32, alone, served))
    return {"faces": int(len(x)), "labels_differing_int8_alone": int((lf != lq).sum()),
            "labels_differing_as_served": int((lf != ls).sum()),
            "near_tie_share": round(float(np.any(served != alone, axis=1).mean()), 4),
            "accuracy_float32": round(float((lf == y).mean()), 4), "accuracy_int8_alone": round(float((lq == y).mean()), 4),
            "max_abs_prob_diff": round(float(np.abs(alone - f32).max()), 4)}


def quantize(folder: str | Path, data: str | Path, cfg: QuantizeConfig = QuantizeConfig(), command: str = "") -> dict:
    """Write model.int8.onnx and its sidecar beside a current model.onnx; return the sidecar's contents."""
    import onnxruntime

    from core.model import MODEL_FILE, Classifier

    cfg.validate()
    folder = Path(folder)
    reason = stale_reason(folder, folder / MODEL_FILE)
    if reason:
        raise ValueError(f"{folder}: {reason}; quantisation starts from a current float32 export")
    clf = Classifier(folder, warm_up=False, runtime="onnx", exact=True)
    x, _ = split_faces(clf, data, "train", cfg.faces, cfg.seed)
    calibration = [clf.views(x[i:i + cfg.batch]) for i in range(0, len(x), cfg.batch)]
    tmp = folder / (INT8_FILE + ".tmp")
    calibrate_and_write(folder / ONNX_FILE, tmp, calibration)
    meta = {"source": MODEL_FILE, "source_sha256": sha256(folder / MODEL_FILE), "float32_onnx_sha256": sha256(folder / ONNX_FILE),
            "quantizer": f"onnxruntime {onnxruntime.__version__} quantize_static",
            "scheme": "QDQ; int8 weights per output channel with reduce_range (7 bits); uint8 activations; "
                      "MinMax ranges over every test-time view",
            "calibration": {"data": portable_path(data), "split": "train", "faces": int(len(x)), "seed": cfg.seed},
            "config": asdict(cfg), "command": command}
    tmp.replace(folder / INT8_FILE)
    write_json_atomic(folder / INT8_META, meta)   # the copy is current from here on
    if cfg.check:
        xc, yc = split_faces(clf, data, "test", cfg.check, None)
        meta["agreement_on_test_faces"] = agreement(folder, clf.predict(xc), xc, yc)
        write_json_atomic(folder / INT8_META, meta)
    return meta


def main(argv=None) -> int:
    quiet_command(argv)
    d = QuantizeConfig()
    p = argparse.ArgumentParser(prog="python -m training.quantize", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("folder", help="model folder with a current model.onnx (python -m core.export)")
    p.add_argument("--data", required=True, help="the model's training dataset: its training faces calibrate, "
                                                 "its test faces check")
    p.add_argument("--faces", type=int, default=d.faces, help="calibration faces (default: %(default)s)")
    p.add_argument("--check", type=int, default=d.check,
                   help="test faces on which int8 and float32 labels are compared, 0 for none (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the calibration sample (default: %(default)s)")
    args = p.parse_args(argv)
    cfg = QuantizeConfig(faces=args.faces, check=args.check, seed=args.seed)
    command = portable_command(["python", "-m", "training.quantize", args.folder, "--data", args.data,
                                "--faces", str(cfg.faces), "--check", str(cfg.check), "--seed", str(cfg.seed)])
    try:
        meta = quantize(args.folder, args.data, cfg, command)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.folder}/{INT8_FILE}: calibrated on {meta['calibration']['faces']} training faces")
    check = meta.get("agreement_on_test_faces")
    if check:
        print(f"on {check['faces']} test faces: {check['labels_differing_int8_alone']} labels differ from float32 "
              f"alone, {check['labels_differing_as_served']} as served (near ties, {check['near_tie_share']:.1%} of "
              f"faces, read again in float32); accuracy {check['accuracy_float32']:.2%} float32, "
              f"{check['accuracy_int8_alone']:.2%} int8 alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
