"""The prior correction: offsets on log-probabilities, fitted for the worst of several collections, saved in a
model's metadata and applied by every prediction of the real bundled expression model."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from core.model import Classifier, ModelError, apply_class_bias
from tests.conftest import EXPRESSIONS, REPO, need
from training.prior import accuracy, balanced_accuracy, fit_bias, objective


def test_apply_class_bias_renormalises_and_moves_the_decision():
    p = np.array([[0.5, 0.3, 0.2], [0.2, 0.7, 0.1]], np.float32)
    assert apply_class_bias(p, []) is p
    q = apply_class_bias(p, [0.0, np.log(2.0), 0.0])
    assert np.allclose(q.sum(axis=1), 1)
    assert np.allclose(q[0], np.array([0.5, 0.6, 0.2]) / 1.3, atol=1e-5)   # p * exp(bias), renormalised
    assert q[0].argmax() == 1 and q[1].argmax() == 1


def normalised(*pairs):
    """(probabilities, labels) sets from (scores, labels) pairs, and their (log-probabilities, labels)."""
    sets = [(p / p.sum(1, keepdims=True), y) for p, y in pairs]
    return sets, [(np.log(p), y) for p, y in sets]


def test_fit_bias_mends_an_over_called_class_on_the_worse_collection():
    rng = np.random.default_rng(0)
    # collection A: balanced and well classified; collection B: its class-1 faces are called class 0
    ya = np.repeat([0, 1, 2], 100)
    pa = np.eye(3)[ya] * 0.6 + rng.uniform(0, 0.2, (300, 3))
    yb = np.repeat([0, 1], 100)
    pb = np.eye(3)[yb] * 0.5 + rng.uniform(0, 0.2, (200, 3))
    pb[yb == 1, 0] += 0.6                                    # over-called: class 0 wins most class-1 faces
    sets, logs = normalised((pa, ya), (pb, yb))
    before = objective(logs, np.zeros(3))
    bias = fit_bias(sets, 3)
    after = objective(logs, bias)
    assert after[0] > before[0] + 0.2                         # the worst collection rises a lot
    assert bias[1] - bias[0] > 0                              # by favouring class 1 against class 0
    assert balanced_accuracy(ya, np.argmax(logs[0][0] + bias, 1)) > 0.9   # without breaking the good one


def test_a_gentle_fit_moves_only_the_named_class_and_keeps_the_first_sets_accuracy():
    rng = np.random.default_rng(1)
    # set A: 3 classes, class 1 a little under-called; set B: calm faces (class 1) mostly called class 0
    ya = np.repeat([0, 1, 2], 200)
    pa = np.eye(3)[ya] * 0.25 + rng.uniform(0, 0.4, (600, 3))
    yb = np.repeat([1, 2], 100)
    pb = np.eye(3)[yb] * 0.4 + rng.uniform(0, 0.3, (200, 3))
    pb[yb == 1, 0] += 0.35
    sets, logs = normalised((pa, ya), (pb, yb))
    free = fit_bias(sets, 3, order="mean", step=0.1)
    gentle = fit_bias(sets, 3, classes=[1], max_drop=0.01, order="mean", step=0.1)
    assert gentle[0] == gentle[2] == 0 and gentle[1] > 0                  # only class 1 moved, upwards
    assert accuracy(*logs[0], gentle) >= accuracy(*logs[0], np.zeros(3)) - 0.01
    assert objective(logs, gentle, "mean")[0] > objective(logs, np.zeros(3), "mean")[0]
    assert accuracy(*logs[0], free) < accuracy(*logs[0], np.zeros(3)) - 0.01   # unbounded, it costs set A more


def test_the_bundled_model_applies_its_metadata_class_bias(tmp_path):
    face = cv2.cvtColor(cv2.imread(str(need(EXPRESSIONS / "neutral.jpg"))), cv2.COLOR_BGR2RGB)
    folder = tmp_path / "expression"
    shutil.copytree(REPO / "models" / "expression", folder)
    meta_path = folder / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["class_bias"] = []
    meta_path.write_text(json.dumps(meta))
    from core.pipeline import Pipeline

    plain = Pipeline(Classifier(folder))(face, thorough=True)[0]
    bias = [0.0] * 7
    bias[plain.index] = -3.0                                  # talk the model out of its own answer
    meta["class_bias"] = bias
    meta_path.write_text(json.dumps(meta))
    moved = Pipeline(Classifier(folder))(face, thorough=True)[0]
    assert moved.index != plain.index
    assert np.allclose(moved.probs, apply_class_bias(plain.probs[None], bias)[0], atol=1e-4)
    meta["class_bias"] = [0.5, 0.1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="class_bias has 2 values for 7 classes"):
        Classifier(folder, warm_up=False)


def test_the_command_writes_a_corrected_copy_with_a_portable_command_and_none_of_the_old_figures(tmp_path,
                                                                                               monkeypatch):
    """`python -m training.prior` on small copies of the real datasets and the bundled expression model."""
    from core.model import ModelMeta
    from tiny_dataset import FER, GENKI, make_mini_fer, make_mini_genki
    from training import prior

    need(FER), need(GENKI)
    fer, genki = make_mini_fer(tmp_path / "fer", 6), make_mini_genki(tmp_path / "g", 12)
    monkeypatch.setenv("GRIN_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "runs" / "corrected"
    assert prior.main(["--model", str(REPO / "models" / "expression"), "--fer", str(fer), "--genki", str(genki),
                       "--classes", "neutral", "--step", "0.5", "--out", str(out)]) == 0
    meta = ModelMeta.load(out)
    neutral = meta.class_names.index("neutral")
    assert len(meta.class_bias) == 7 and not any(b for i, b in enumerate(meta.class_bias) if i != neutral)
    record = meta.extra["prior_correction"]
    assert record["command"].startswith("python -m training.prior --model models/expression --fer <elsewhere>/fer")
    assert record["command"].endswith("--out <runs>/corrected") and record["fitted_on"]["genki4k-train-subset"] > 0
    assert (out / "model.keras").is_file() and (out / "model.onnx").is_file()
    assert [f for f in (REPO / "models" / "expression").iterdir() if f.name.startswith(prior.FIGURES)]
    assert not [f.name for f in out.iterdir() if f.name.startswith(prior.FIGURES)]   # the uncorrected model's


def test_offsets_asked_by_name_keep_the_models_own_for_the_other_classes():
    from core.decision import offsets_from_specs, with_offset
    from core.tasks import get_task

    task = get_task("expression")
    own = [0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0]
    assert offsets_from_specs([], task, own) is None
    assert offsets_from_specs(["neutral=0.4", "sad=-0.2"], task, own) == (0, 0, 0, 0, 0.4, -0.2, 0)
    assert offsets_from_specs(["fear=1"], task, [])[2] == 1.0
    for spec, said in (("calm=1", "the classes are angry"), ("neutral", "'' is not a number"),
                       ("neutral=inf", "between -5 and 5"), ("neutral=nan", "between -5 and 5")):
        with pytest.raises(ValueError, match=said):
            offsets_from_specs([spec], task, own)
    with pytest.raises(ValueError, match="'smile' uses a threshold"):
        offsets_from_specs(["smile=1"], get_task("smile"), [])
    assert with_offset(own, 7, 4, 0.1) is None                      # the model's own: no override
    assert with_offset([], 7, 4, 0.0) is None
    assert with_offset(own, 7, 4, 0.5) == (0, 0, 0, 0, 0.5, 0, 0)


def test_an_offset_given_at_prediction_replaces_the_models_own_with_the_same_labels_as_float32(
        expression_classifier, expressions_dir):
    """Classifier.predict(class_bias=...) on the bundled model: the served read (int8 or bfloat16 where
    available) gives float32's labels under each offset, since near ties are judged after the offsets."""
    from core.detect import FaceDetector
    from core.preprocess import crop_faces

    clf, detector = expression_classifier, FaceDetector()
    crops = []
    for path in sorted(expressions_dir.glob("*.jpg")):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        for picture in (image, image[:, ::-1], (image * 0.5).astype(np.uint8)):
            crops.append(crop_faces(picture, detector.detect(picture, thorough=True)[:1], clf.preprocess)[0])
    x = np.stack(crops)
    exact = Classifier(REPO / "models" / "expression", warm_up=False, exact=True)
    network = exact.predict(x, class_bias=[0.0] * 7)
    labels = set()
    for v in (-0.5, 0.1, 0.6, 1.5):
        bias = [0.0, 0.0, 0.0, 0.0, v, 0.0, 0.0]
        want = exact.predict(x, class_bias=bias)
        np.testing.assert_allclose(want, apply_class_bias(network, bias), atol=1e-5)
        served = clf.predict(x, class_bias=bias)
        assert (served.argmax(1) == want.argmax(1)).all()
        labels.add(tuple(want.argmax(1)))
    assert len(labels) > 1                                   # the offsets moved some decisions
    np.testing.assert_allclose(exact.predict(x), exact.predict(x, class_bias=exact.meta.class_bias), atol=1e-6)
    with pytest.raises(ModelError, match="class offsets must be 7 finite numbers"):
        clf.predict(x[:1], class_bias=[0.0, 1.0])


def test_the_offset_curve_scores_every_offset_on_the_fitting_sets_and_their_hard_conditions(tmp_path, capsys,
                                                                                              shipped_neutral_offset):
    """`python -m bench.offset_curve` on small copies of the real datasets and the bundled expression model."""
    from bench import offset_curve
    from tiny_dataset import FER, GENKI, make_mini_fer, make_mini_genki

    need(FER), need(GENKI)
    fer, genki = make_mini_fer(tmp_path / "fer", 6), make_mini_genki(tmp_path / "g", 12)
    out = tmp_path / "curve.json"
    assert offset_curve.main(["--fer", str(fer), "--genki", str(genki), "--lo", "-3", "--hi", "3", "--step", "1",
                              "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["class"] == "neutral" and d["model_offset"] == shipped_neutral_offset
    assert [r["offset"] for r in d["rows"]] == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    sets = ["fer2013-public-test", "fer2013-public-test/jpeg10", "genki4k-train-subset", "genki4k-train-subset/tight"]
    assert list(d["sizes"]) == sets and all(n > 0 for n in d["sizes"].values())
    for name in sets:
        recall = [r[name]["recall"] for r in d["rows"]]
        assert recall == sorted(recall)                   # more faces read neutral as its offset rises
        assert name.startswith("genki") or recall[-1] > recall[0]
    assert "* the model's own offset" in capsys.readouterr().out
    assert offset_curve.main(["--fer", str(fer), "--genki", str(genki), "--class", "calm"]) == 2
    assert offset_curve.main(["--fer", str(fer), "--genki", str(genki), "--lo", "2", "--hi", "1"]) == 2
    nopublic = tmp_path / "nopublic"                 # FER-2013's layout, but its test faces are not PublicTest's
    for split in ("train", "test"):
        for cls in ("happy", "neutral", "disgust"):
            (nopublic / split / cls).mkdir(parents=True)
            shutil.copy(next((fer / "train" / cls).iterdir()), nopublic / split / cls / "face.jpg")
    capsys.readouterr()
    assert offset_curve.main(["--fer", str(nopublic), "--genki", str(genki)]) == 2
    assert "no FER-2013 PublicTest faces" in capsys.readouterr().err
