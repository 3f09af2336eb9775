"""training.quantize: the int8 copy of a model's ONNX export, calibrated on its own training faces, with the
input scaling folded into the first convolution; bad settings and stale exports refused with the reason."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from core.model import Classifier, ModelError
from core.onnx_runtime import INT8, INT8_FILE, INT8_META, ONNX_FILE, ONNX_META, _session
from training.quantize import QuantizeConfig, fold_input_scaling, main, quantize
from tests.conftest import EXPRESSIONS, need
from tiny_dataset import FER, make_mini_fer

MODELS = Path(__file__).resolve().parents[1] / "models"


def _photos(size: int) -> np.ndarray:
    """The seven posed photos as gray model inputs (real faces)."""
    return np.stack([cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (size, size))[:, :, None]
                     for p in sorted(need(EXPRESSIONS).glob("*.jpg"))]).astype(np.float32)


@pytest.mark.parametrize("task", ["smile", "expression"])
def test_folding_the_input_scaling_keeps_the_networks_outputs(tmp_path, task):
    """Both shipped networks start with x / 255: folded into the first convolution's weights, the graph
    loses its multiply and gives the same probabilities on real faces."""
    path = tmp_path / "model.onnx"
    shutil.copy(MODELS / task / ONNX_FILE, path)
    before = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert fold_input_scaling(path) == []
    after = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert before[:2] == ["Mul", "Add"] and "Mul" not in after[:after.index("Conv")]
    assert len(after) == len(before) - 2
    x = _photos(Classifier(MODELS / task, warm_up=False, runtime="onnx").preprocess.input_size)
    want = _session(MODELS / task / ONNX_FILE, 1).run(None, {"x": x})[0]
    np.testing.assert_allclose(_session(path, 1).run(None, {"x": x})[0], want, atol=1e-5)


def test_quantize_writes_an_int8_copy_served_with_float32_near_ties(tmp_path):
    """Calibrated on a few real FER-2013 training faces: a current copy, under a third of the float32
    size, served by "auto" (where no bfloat16 wins) and by "int8", its labels Keras's on real faces."""
    if not FER.is_dir():
        pytest.skip(f"{FER} is absent (shared datasets live beside the repo)")
    data = make_mini_fer(tmp_path / "fer", per_class=6)
    folder = shutil.copytree(MODELS / "expression", tmp_path / "expression")
    for f in (INT8_FILE, INT8_META):
        (folder / f).unlink()
    meta = quantize(folder, data, QuantizeConfig(faces=40, check=42, seed=1), command="python -m training.quantize")
    assert 30 <= meta["calibration"]["faces"] <= 40 and meta["calibration"]["split"] == "train"   # validation carved out
    check = meta["agreement_on_test_faces"]
    assert check["faces"] == 42 and check["labels_differing_as_served"] == 0
    assert 0 < check["max_abs_prob_diff"] < 0.2   # int8, not float32
    assert json.loads((folder / INT8_META).read_text()) == meta
    assert (folder / INT8_FILE).stat().st_size < (folder / ONNX_FILE).stat().st_size / 3
    served = Classifier(folder, warm_up=False, runtime="int8")
    assert served.precision == INT8
    faces = _photos(48).astype(np.uint8)
    keras_labels = Classifier(folder, warm_up=False, runtime="keras").predict(faces).argmax(1)
    np.testing.assert_array_equal(served.predict(faces).argmax(1), keras_labels)


def test_bad_settings_and_stale_exports_are_refused(tmp_path, capsys):
    folder = shutil.copytree(MODELS / "expression", tmp_path / "expression")
    with pytest.raises(ValueError, match="faces must be 16-20000"):
        quantize(folder, tmp_path, QuantizeConfig(faces=3))
    meta = json.loads((folder / ONNX_META).read_text())
    (folder / ONNX_META).write_text(json.dumps({**meta, "source_sha256": "0" * 64}))
    assert main([str(folder), "--data", str(tmp_path)]) == 2
    assert "quantisation starts from a current float32 export" in capsys.readouterr().err
    assert (folder / INT8_FILE).read_bytes() == (MODELS / "expression" / INT8_FILE).read_bytes()   # untouched
    with pytest.raises(ModelError, match="cannot serve through ONNX Runtime in int8"):
        Classifier(folder, warm_up=False, runtime="int8")   # its near ties would be read by a stale export
