"""Export a model folder's model.keras to model.onnx (ONNX Runtime serves it on CPU):
`python -m core.export models/smile models/expression`. Rerun it whenever model.keras changes."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.fileio import write_json_atomic
from core.onnx_runtime import INPUT_NAME, ONNX_FILE, ONNX_META, sha256
from core.portable import portable_path
from core.runtime import quiet_command

OPSET = 17
MAX_ABS_DIFF = 1e-4   # largest probability difference from Keras allowed on the check inputs


def export(folder: str | Path, seed: int = 0) -> dict:
    """Write model.onnx and model.onnx.json beside model.keras; return the sidecar's contents.
    The export is checked against Keras on random inputs before it is kept (ValueError if it differs)."""
    import tf2onnx

    from core.model import MODEL_FILE, Classifier
    from core.runtime import tensorflow

    folder = Path(folder)
    clf = Classifier(folder, warm_up=False, runtime="keras")
    tf = tensorflow()
    spec = (tf.TensorSpec((None, *clf.preprocess.input_shape), tf.float32, name=INPUT_NAME),)
    fn = tf.function(lambda x: clf.model(x, training=False))
    tmp = folder / (ONNX_FILE + ".tmp")
    tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET, output_path=str(tmp))
    x = np.random.default_rng(seed).integers(0, 256, (16, *clf.preprocess.input_shape)).astype(np.float32)
    import onnxruntime as ort

    got = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]
    diff = float(np.abs(got - clf.model(x, training=False).numpy()).max())
    if diff > MAX_ABS_DIFF:
        tmp.unlink()
        raise ValueError(f"{folder}: the ONNX export differs from Keras by {diff:.2e} (> {MAX_ABS_DIFF})")
    tmp.replace(folder / ONNX_FILE)
    meta = {"source": MODEL_FILE, "source_sha256": sha256(folder / MODEL_FILE), "opset": OPSET,
            "exporter": f"tf2onnx {tf2onnx.__version__}", "input": INPUT_NAME,
            "max_abs_diff_vs_keras": diff, "command": f"python -m core.export {portable_path(folder)}"}
    write_json_atomic(folder / ONNX_META, meta)
    return meta


def ensure_export(folder: str | Path) -> str:
    """Give a model folder a current model.onnx, so that ONNX Runtime serves it (a trained run the app is
    to use, say): nothing to do where it has one. Returns "" when it has one now, else why it could not."""
    from core.model import MODEL_FILE
    from core.onnx_runtime import stale_reason

    folder = Path(folder)
    if not stale_reason(folder, folder / MODEL_FILE):
        return ""
    try:
        export(folder)
    except ImportError as exc:
        return f"the ONNX exporter is not installed ({exc})"
    except Exception as exc:   # the converter raises many types; Keras still serves the folder
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return ""


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m core.export", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("folders", nargs="+", help="model folders (model.keras + metadata.json)")
    args = p.parse_args(argv)
    status = 0
    for folder in args.folders:
        try:
            meta = export(folder)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{folder}/{ONNX_FILE}: {meta['exporter']}, opset {meta['opset']}, "
              f"largest difference from Keras {meta['max_abs_diff_vs_keras']:.1e}")
    return status


if __name__ == "__main__":
    sys.exit(main())
