"""The shipped models: safe loading, metadata checked against the task registry, refusals with a
reason, prediction shapes, flip averaging, and the accuracy the README claims."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.model import CORNER_CROPS, META_FILE, MODEL_FILE, Classifier, ModelError, ModelMeta
from core.tasks import get_task
from tiny_dataset import GENKI

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


def copy_model(source: str, dest: Path, **meta_changes) -> Path:
    """A copy of a shipped model folder with some metadata fields replaced."""
    shutil.copytree(MODELS / source, dest)
    meta = json.loads((dest / META_FILE).read_text())
    for key, value in meta_changes.items():
        if isinstance(value, dict):
            meta[key] = {**meta[key], **value}
        else:
            meta[key] = value
    (dest / META_FILE).write_text(json.dumps(meta))
    return dest


@pytest.mark.parametrize("task", ["smile", "expression"])
def test_shipped_model_loads_safely_and_matches_its_task(task, request):
    clf = request.getfixturevalue(f"{task}_classifier")
    t = get_task(task)
    assert clf.task is t
    assert tuple(clf.meta.class_names) == t.class_names
    assert clf.preprocess.input_size == t.input_size and clf.preprocess.color_mode == t.color_mode
    assert clf.model.input_shape == (None, t.input_size, t.input_size, 1)
    assert clf.model.output_shape == (None, t.n_classes)
    assert ModelMeta.load(MODELS / task).validate() is t
    assert 0 < clf.meta.threshold < 1 and clf.n_params > 1000


@pytest.mark.parametrize("task", ["smile", "expression"])
def test_predict_gives_probabilities(task, request):
    clf = request.getfixturevalue(f"{task}_classifier")
    n = get_task(task).n_classes
    x = np.random.default_rng(0).integers(0, 256, (5, *clf.preprocess.input_shape), dtype=np.uint8)
    probs = clf.predict(x)
    assert probs.shape == (5, n) and probs.dtype == np.float32
    assert np.all(probs >= 0) and np.all(probs <= 1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(clf.predict(x[:2]), probs[:2], atol=1e-5)     # batch size does not matter
    np.testing.assert_allclose(clf.predict(x, batch_size=2), probs, atol=1e-5)
    assert clf.predict(x[:0]).shape == (0, n)


def test_flip_averaging(smile_classifier, tmp_path):
    """With TTA a crop and its mirror image score the same; without it the raw model output comes back."""
    clf = smile_classifier
    assert clf.meta.tta_flip
    x = np.random.default_rng(1).integers(0, 256, (4, *clf.preprocess.input_shape), dtype=np.uint8)
    np.testing.assert_allclose(clf.predict(x), clf.predict(x[:, :, ::-1].copy()), atol=1e-5)
    # float32 runtimes, to compare with Keras to rounding (the served one may read in bfloat16)
    plain = Classifier(copy_model("smile", tmp_path / "plain", tta_flip=False), warm_up=False, runtime="onnx")
    raw = np.asarray(plain.model(x.astype(np.float32), training=False))
    np.testing.assert_allclose(plain.predict(x), raw, atol=1e-5)
    both = (raw + np.asarray(plain.model(x[:, :, ::-1].astype(np.float32), training=False))) / 2
    np.testing.assert_allclose(Classifier(clf.folder, warm_up=False, runtime="onnx").predict(x), both, atol=1e-5)


def test_test_time_crops(smile_classifier, tmp_path):
    """Extra crop views: the identity box changes nothing, corner crops change the answer but keep it
    mirror-symmetric (the corner set is its own mirror image), and `crops=False` turns them off."""
    x = np.random.default_rng(2).integers(0, 256, (3, *smile_classifier.preprocess.input_shape), dtype=np.uint8)
    flip_only = smile_classifier.predict(x)
    same = Classifier(copy_model("smile", tmp_path / "id", tta_crops=[[0, 0, 1, 1]]), warm_up=False)
    assert same.n_views == 4
    np.testing.assert_allclose(same.predict(x), flip_only, atol=1e-5)
    ten = Classifier(copy_model("smile", tmp_path / "ten", tta_crops=CORNER_CROPS), warm_up=False)
    assert ten.n_views == 10
    probs = ten.predict(x)
    assert np.abs(probs - flip_only).max() > 1e-3
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(ten.predict(x[:, :, ::-1].copy()), probs, atol=1e-5)
    np.testing.assert_allclose(ten.predict(x[:1]), probs[:1], atol=1e-5)
    fast = Classifier(tmp_path / "ten", warm_up=False, crops=False)
    assert fast.n_views == 2
    np.testing.assert_allclose(fast.predict(x), flip_only, atol=1e-5)


@pytest.mark.parametrize("box", [[0, 0, 1], [0.5, 0, 0.4, 1], [0, 0, 1, 1.2]])
def test_bad_test_time_crops_are_refused(box, tmp_path):
    with pytest.raises(ModelError, match=r"bad test-time crop"):
        Classifier(copy_model("smile", tmp_path / "m", tta_crops=[box]), warm_up=False)


def test_mismatched_classes_are_refused(tmp_path):
    folder = copy_model("smile", tmp_path / "m", class_names=["happy", "sad"])
    with pytest.raises(ModelError, match=r"model classes \['happy', 'sad'\] do not match task 'smile'"):
        Classifier(folder)


def test_a_network_that_contradicts_its_metadata_is_refused(tmp_path):
    folder = copy_model("smile", tmp_path / "m", preprocess={"input_size": 48})
    with pytest.raises(ModelError, match=r"model shapes \(None, 64, 64, 1\) -> \(None, 2\) do not match its "
                                         r"metadata \(None, 48, 48, 1\)"):
        Classifier(folder)


@pytest.mark.parametrize("preprocess, said", [
    ({"input_size": 8}, "model input 8px gray does not fit task 'smile' (gray faces of 32 to 256px)"),
    ({"color_mode": "rgb"}, "model input 64px rgb does not fit task 'smile' (gray faces of 32 to 256px)"),
    ({"equalize": "retinex"}, "model contrast normalisation 'retinex' is unknown to this Grin (it knows none, clahe)"),
])
def test_an_input_the_task_cannot_take_is_refused(tmp_path, preprocess, said):
    with pytest.raises(ModelError, match=re.escape(said)):
        Classifier(copy_model("smile", tmp_path / "m", preprocess=preprocess))


def test_unknown_task_is_refused(tmp_path):
    folder = copy_model("smile", tmp_path / "m", task="age")
    with pytest.raises(ModelError, match="unknown task 'age'"):
        Classifier(folder)


def test_weights_of_another_task_are_refused(tmp_path):
    """Metadata says smile, the network is the 7-class expression one."""
    folder = copy_model("smile", tmp_path / "m")
    shutil.copy(MODELS / "expression" / MODEL_FILE, folder / MODEL_FILE)
    with pytest.raises(ModelError, match="do not match its metadata"):
        Classifier(folder)


def test_non_keras_files_are_refused(tmp_path):
    folder = copy_model("smile", tmp_path / "m")
    (folder / MODEL_FILE).write_text("this is not a model")
    with pytest.raises(ModelError, match="cannot be loaded safely"):
        Classifier(folder)
    (folder / MODEL_FILE).unlink()
    with pytest.raises(ModelError, match="no model.keras"):
        Classifier(folder)


def test_missing_or_unreadable_metadata(tmp_path):
    folder = copy_model("smile", tmp_path / "m")
    (folder / META_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable metadata"):
        Classifier(folder)
    (folder / META_FILE).unlink()
    with pytest.raises(ModelError, match="no metadata.json"):
        Classifier(folder)


def test_a_model_that_would_run_code_is_refused(tmp_path):
    """Safe mode: a Lambda layer (arbitrary Python) in a downloaded model is not deserialised."""
    import keras

    folder = copy_model("smile", tmp_path / "m")
    inputs = keras.Input((64, 64, 1))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(folder / MODEL_FILE)
    with pytest.raises(ModelError, match="cannot be loaded safely"):
        Classifier(folder)


@pytest.mark.slow
@pytest.mark.skipif(not GENKI.is_dir(), reason=f"{GENKI} is absent (shared datasets live beside the repo)")
def test_shipped_smile_model_accuracy_on_genki4k_test_split():
    from training.evaluate import evaluate_dataset

    out = evaluate_dataset(MODELS / "smile", str(GENKI), "test", limit=300)
    assert out["n_images"] == 300
    assert out["accuracy"] >= 0.93, f"accuracy {out['accuracy']:.3f} on 300 GENKI-4K test photos"


