"""Ensembles (`training.ensemble`): several real models of one task saved as one averaged model folder."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from core.fileio import read_jsonl
from core.model import META_FILE, MODEL_FILE, Classifier, ModelMeta
from core.portable import portable_path
from test_model import MODELS, copy_model
from tiny_dataset import GENKI, make_mini_genki
from training.card_data import curve_rows, lineage
from training.config import ConfigError
from training.ensemble import build_ensemble, main, make_ensemble


def _other_smile_model(folder):
    """A second, different smile model: the shipped one with its last layer's weights perturbed."""
    import keras

    model = keras.saving.load_model(folder / MODEL_FILE, compile=False)
    last = [layer for layer in model.layers if layer.get_weights()][-1]
    rng = np.random.default_rng(0)
    last.set_weights([w + rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in last.get_weights()])
    model.save(folder / MODEL_FILE)
    return folder


def test_ensemble_averages_its_members(tmp_path, smile_classifier):
    other = _other_smile_model(copy_model("smile", tmp_path / "other"))
    out = tmp_path / "ens"
    assert main(["--members", str(MODELS / "smile"), str(other), "--out", str(out)]) == 0
    ens = Classifier(out)
    assert ens.task.name == "smile" and ens.n_params == 2 * smile_classifier.n_params
    x = np.random.default_rng(3).integers(0, 256, (6, 64, 64, 1), dtype=np.uint8)
    # the members in float32, as Keras serves the ensemble (the shipped one may read in bfloat16)
    a, b = (Classifier(m, warm_up=False, runtime="keras").predict(x) for m in (MODELS / "smile", other))
    assert np.abs(a - b).max() > 0.01            # the members disagree, so the mean is a real test
    np.testing.assert_allclose(ens.predict(x), (a + b) / 2, atol=1e-5)
    meta = json.loads((out / META_FILE).read_text())
    assert meta["arch"].startswith("ensemble of 2 x ") and meta["tta_crops"] == []
    assert [m["folder"] for m in meta["extra"]["ensemble"]] == ["models/smile", portable_path(other)]
    assert meta["command"].startswith("python -m training.ensemble --members")
    assert meta["preprocess"] == smile_classifier.meta.preprocess


def test_a_weight_average_is_one_network_with_the_mean_of_the_members_weights(tmp_path, smile_classifier):
    """`--average weights`: one network of one member's size; its last layer is the mean of the members'."""
    import keras

    other = _other_smile_model(copy_model("smile", tmp_path / "other"))
    out = tmp_path / "soup"
    assert main(["--members", str(MODELS / "smile"), str(other), "--out", str(out), "--average", "weights"]) == 0
    soup = Classifier(out, warm_up=False)
    assert soup.n_params == smile_classifier.n_params and soup.meta.arch == smile_classifier.meta.arch
    last = [[la for la in keras.saving.load_model(f / MODEL_FILE, compile=False).layers if la.get_weights()][-1]
            .get_weights() for f in (MODELS / "smile", other, out)]
    np.testing.assert_allclose(last[2][0], (last[0][0] + last[1][0]) / 2, atol=1e-6)
    x = np.random.default_rng(3).integers(0, 256, (6, 64, 64, 1), dtype=np.uint8)
    a, b, m = smile_classifier.predict(x), Classifier(other, warm_up=False).predict(x), soup.predict(x)
    assert np.abs(m - a).max() > 1e-3 and np.abs(m - b).max() > 1e-3   # neither member
    meta = json.loads((out / META_FILE).read_text())
    assert meta["extra"]["average"] == "weights" and meta["tta_crops"] == smile_classifier.meta.tta_crops
    steps = lineage(out, ModelMeta.load(out))     # the card's "how it was made"
    assert steps[-1].what == "one network, the mean of their weights"
    # the runs the shipped smile model came from: its --init chain, oldest first (none when trained from scratch)
    chain, node, first = 0, smile_classifier.meta.extra.get("init"), smile_classifier.meta.command
    while node:
        chain, first, node = chain + 1, node["command"], node.get("init")
    assert [s.brief for s in steps] == ([True] * chain + [False]) * 2 + [False]
    assert [s.what.split(",")[0] for s in steps[chain:2 * chain + 2:chain + 1]] == ["member 1", "member 2"]
    assert len(steps) == 2 * chain + 3
    assert steps[0].command == steps[chain + 1].command == first             # each member's own --init chain
    carried = meta["extra"]["ensemble"][0]["metrics_file"]       # named by its content
    assert re.fullmatch(r"metrics_[0-9a-f]{12}\.jsonl", carried)
    assert (out / carried).read_bytes() == (MODELS / "smile" / "metrics.jsonl").read_bytes()
    assert steps[chain].minutes and steps[chain].minutes == steps[2 * chain + 1].minutes   # from the copied curves
    rows, whose = curve_rows(out)                  # the card's learning curves: the member trained last
    assert whose == "member 2" and len(rows) == len(read_jsonl(other / "metrics.jsonl")) > 0
    # members of different networks cannot be averaged weight by weight
    make_ensemble([MODELS / "smile", other], tmp_path / "ens")
    with pytest.raises(ConfigError, match="one architecture"):
        make_ensemble([MODELS / "smile", tmp_path / "ens"], tmp_path / "bad", average="weights")
    assert not (tmp_path / "bad").exists()


def test_a_weight_average_keeps_the_first_members_ten_crop_test(tmp_path):
    """The second member's metadata leaves a default setting implicit that the first spells out: still one
    preprocessing."""
    other = copy_model("expression", tmp_path / "other")
    meta = json.loads((other / META_FILE).read_text())
    assert meta["preprocess"]["equalize"] == "none"
    meta["preprocess"] = {k: v for k, v in meta["preprocess"].items() if k != "equalize"}
    meta["tta_crops"] = []
    (other / META_FILE).write_text(json.dumps(meta))
    assert ModelMeta.load(other).preprocess != ModelMeta.load(MODELS / "expression").preprocess
    make_ensemble([MODELS / "expression", other], tmp_path / "soup", average="weights")
    # both members are themselves weight averages: the card lists their members' runs, and keeps their curves
    inner = ModelMeta.load(MODELS / "expression").extra["ensemble"]
    steps = lineage(tmp_path / "soup", ModelMeta.load(tmp_path / "soup"))
    members = [(s.what.split(",")[0].split()[1], s.brief) for s in steps if s.what.startswith("member ")]
    assert [n for n, brief in members if not brief] == ["1", "2"]          # the two members, with commands
    inside = [n for n, brief in members if brief]                          # their own members, by name
    assert inside and all(n.startswith(("1.", "2.")) for n in inside)
    assert [n[2:] for n in inside if n[0] == "1"] == [n[2:] for n in inside if n[0] == "2"]
    deeper = [s for s in steps if s.what.startswith("member 1.1,")]    # an average inside a member's: one line
    assert len(deeper) == 1 and "of earlier runs (" in deeper[0].what and "expression-fv" in deeper[0].what
    # a long lineage in one line: how many runs, the first three and the last (metadata.json keeps every one)
    assert re.search(r"\(\d+ runs: expression-a, expression-b, expression-fv, \.\.\., expression-\w+\)", deeper[0].what)
    assert not any(s.what.startswith("member 1.1.") for s in steps)
    records = ModelMeta.load(tmp_path / "soup").extra["ensemble"]
    one, two = (r["members"][-1]["metrics_file"] for r in records)
    assert (tmp_path / "soup" / two).read_bytes() == (MODELS / "expression" / inner[-1]["metrics_file"]).read_bytes()
    # the same curves, carried through both members and however many averages deep, keep one content name
    assert one == two and re.fullmatch(r"metrics_[0-9a-f]{12}\.jsonl", two)
    names = sorted(p.name for p in (tmp_path / "soup").glob("*.jsonl"))
    assert names and all(re.fullmatch(r"metrics_[0-9a-f]{12}\.jsonl", n) for n in names)
    clf = Classifier(tmp_path / "soup", warm_up=False)
    assert clf.n_views == 10 and clf.meta.tta_crops == Classifier(MODELS / "expression", warm_up=False).meta.tta_crops
    # a prior correction is fitted to one network: an average keeps it only when every member has the same one
    offset = [0.0] * 4 + [0.4] + [0.0] * 2
    first = copy_model("expression", tmp_path / "first", class_bias=offset)
    for bias in (offset, []):
        (other / META_FILE).write_text(json.dumps({**meta, "class_bias": bias}))
        soup = make_ensemble([first, other], tmp_path / f"soup-{len(bias)}", average="weights")
        assert ModelMeta.load(soup).class_bias == bias


def test_ensemble_with_corner_crops(tmp_path):
    make_ensemble([MODELS / "smile", MODELS / "smile"], tmp_path / "ens", crops="corners")
    clf = Classifier(tmp_path / "ens", warm_up=False)
    assert clf.n_views == 10 and len(clf.meta.tta_crops) == 4


def test_members_of_different_tasks_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="differs from"):
        make_ensemble([MODELS / "smile", MODELS / "expression"], tmp_path / "ens")
    with pytest.raises(ConfigError, match="at least two members"):
        make_ensemble([MODELS / "smile"], tmp_path / "ens")
    assert main(["--members", str(MODELS / "smile"), str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")]) == 2
    assert "no metadata.json" in capsys.readouterr().err
    assert not (tmp_path / "ens").exists() and not (tmp_path / "e").exists()


def test_build_ensemble_output_shape():
    model = build_ensemble([MODELS / "expression", MODELS / "expression"])
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)


@pytest.mark.skipif(not GENKI.is_dir(), reason=f"{GENKI} is absent (shared datasets live beside the repo)")
def test_choosing_on_validation_and_scoring_the_test_split(tmp_path, monkeypatch, capsys):
    """`--data`: every member's and the ensemble's validation figures, a threshold tuned on validation,
    and the test split evaluated for the record (eval.json, metrics.test_accuracy)."""
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path / "cache"))
    data = make_mini_genki(tmp_path / "genki", per_class=20)
    other = _other_smile_model(copy_model("smile", tmp_path / "other"))
    out = tmp_path / "ens"
    assert main(["--members", str(MODELS / "smile"), str(other), "--out", str(out), "--crops", "corners",
                 "--data", str(data), "--json", str(tmp_path / "val.json")]) == 0
    meta = json.loads((out / META_FILE).read_text())
    rows = meta["extra"]["validation"]
    assert [(r["model"], r["crops"]) for r in rows] == [("models/smile", False), (portable_path(other), False),
                                                        (portable_path(out), False), (portable_path(out), True)]
    assert not any(r["model"].startswith("/") for r in rows)     # no machine's paths in the metadata
    assert all(0 <= r["val_accuracy"] <= 1 for r in rows)
    assert meta["metrics"]["val_accuracy"] == rows[-1]["val_accuracy"]
    assert 0.2 <= meta["threshold"] <= 0.8
    ev = json.loads((out / "eval.json").read_text())
    assert ev["split"] == "test" and ev["n_images"] >= 4 and meta["metrics"]["test_accuracy"] == ev["accuracy"]
    assert json.loads((tmp_path / "val.json").read_text())["validation"] == rows
    assert "crops=yes" in capsys.readouterr().out
