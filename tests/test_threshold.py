"""bench.threshold: a binary model's threshold chosen on the validation suite by the written rule, on
readings the tests make and, end to end, on the shipped smile model and real GENKI-4K photos."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench import threshold as th
from bench.generalisation import MIN_N_WORST, run_suite
from core.model import ModelMeta
from core.tasks import EXPRESSION, SMILE
from tests.conftest import REPO
from tests.tiny_dataset import GENKI, make_mini_genki


def reading(pos_probs: list[float], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of a smile check: column 1 is P(smile)."""
    p = np.asarray(pos_probs, np.float32)
    return np.asarray(labels), np.stack([1 - p, p], axis=1)


def repeat(values: list[float], labels: list[int], times: int):
    return reading(values * times, labels * times)


def test_the_rule_takes_the_best_worst_case_that_keeps_the_floor():
    # anchor: all right above 0.33 and up to 0.52 (a non-smile reads 0.33, a smile 0.52)
    anchor = repeat([0.52, 0.9, 0.33, 0.1], [1, 1, 0, 0], 20)
    # a hard check: its smiles read 0.36-0.44, its non-smiles 0.2: the lower the threshold, the better
    hard = repeat([0.36, 0.44, 0.2, 0.2], [1, 1, 0, 0], 20)
    cfg = th.SweepConfig(lo=0.30, hi=0.60, step=0.05, floor=0.9)
    rows = th.sweep({"genki4k-val": anchor, "fer2013-val": hard}, SMILE, cfg)
    assert [r.threshold for r in rows] == [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
    by = {r.threshold: r for r in rows}
    assert by[0.3].worst_balanced_accuracy == 0.75 and by[0.3].worst_check == "genki4k-val"
    assert by[0.3].anchor_accuracy == 0.75 and not by[0.3].eligible
    assert by[0.35].anchor_accuracy == 1.0 and by[0.35].worst_balanced_accuracy == 1.0
    assert by[0.4].worst_balanced_accuracy == 0.75 and by[0.4].worst_check == "fer2013-val"
    assert by[0.5].eligible and not by[0.55].eligible and not by[0.6].eligible
    chosen = th.choose(rows)
    assert chosen.threshold == 0.35


def test_a_tie_goes_to_the_higher_threshold():
    same = repeat([0.1, 0.9], [0, 1], 30)   # right at every threshold
    rows = th.sweep({"genki4k-val": same}, SMILE, th.SweepConfig(lo=0.3, hi=0.6, step=0.1, floor=0.5))
    assert {r.worst_balanced_accuracy for r in rows} == {1.0}
    assert th.choose(rows).threshold == 0.6
    assert th.choose(rows[:2]).threshold == 0.4


def test_checks_too_small_to_decide_on_do_not_set_the_worst_case():
    anchor = repeat([0.1, 0.9], [0, 1], 30)
    tiny = reading([0.9] * (MIN_N_WORST - 1), [0] * (MIN_N_WORST - 1))   # every face wrong, but too few
    rows = th.sweep({"genki4k-val": anchor, "posed-photos": tiny}, SMILE, th.SweepConfig(floor=0.5))
    assert all(r.worst_check == "genki4k-val" and r.worst_balanced_accuracy == 1.0 for r in rows)


def test_what_the_sweep_refuses():
    anchor = repeat([0.1, 0.9], [0, 1], 30)
    with pytest.raises(th.SweepError, match="two-class"):
        th.sweep({"genki4k-val": anchor}, EXPRESSION, th.SweepConfig())
    with pytest.raises(th.SweepError, match="no 'genki4k-val' check"):
        th.sweep({"fer2013-val": anchor}, SMILE, th.SweepConfig())
    for bad in (th.SweepConfig(lo=0.6, hi=0.3), th.SweepConfig(step=0), th.SweepConfig(floor=94)):
        with pytest.raises(th.SweepError):
            th.sweep({"genki4k-val": anchor}, SMILE, bad)
    wrong = repeat([0.9, 0.1], [0, 1], 30)   # every face wrong: no threshold keeps a floor of 90 %
    rows = th.sweep({"genki4k-val": wrong}, SMILE, th.SweepConfig(floor=0.9))
    with pytest.raises(th.SweepError, match="no threshold keeps"):
        th.choose(rows)


@pytest.fixture(scope="module")
def smile_copy_and_genki(tmp_path_factory):
    if not GENKI.is_dir():
        pytest.skip(f"{GENKI} is absent: the sweep reads GENKI-4K's validation photos")
    root = tmp_path_factory.mktemp("threshold")
    genki = make_mini_genki(root / "genki", per_class=200)   # about 60 validation photos, over MIN_N_WORST
    return root, genki


def _copy_smile(root):
    folder = root / "smile"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(REPO / "models" / "smile", folder)
    return folder


@pytest.mark.slow
def test_the_command_chooses_on_real_validation_faces_and_writes_its_choice(smile_copy_and_genki, tmp_path,
                                                                            monkeypatch, capsys):
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path / "cache"))
    root, genki = smile_copy_and_genki
    folder = _copy_smile(root)
    before = ModelMeta.load(folder)
    out = tmp_path / "sweep.json"
    args = ["--model", str(folder), "--genki", str(genki), "--fer", str(tmp_path / "none"),
            "--media", str(tmp_path / "none"), "--lo", "0.3", "--hi", "0.6", "--step", "0.05", "--floor", "0.8"]
    assert th.main(args + ["--json", str(out)]) == 0
    assert ModelMeta.load(folder).threshold == before.threshold   # no --write: the model is untouched
    d = json.loads(out.read_text())
    rows = d["rows"]
    assert [r["threshold"] for r in rows] == [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
    eligible = [r for r in rows if r["eligible"]]
    assert eligible and all(r["anchor_accuracy"] >= 0.8 for r in eligible)
    assert d["chosen"]["worst_balanced_accuracy"] == max(r["worst_balanced_accuracy"] for r in eligible)
    # the GENKI-4K checks (as is and under each condition) were all read and scored: real faces, read well
    assert {r["worst_check"].split("/")[0] for r in rows} == {"genki4k-val"}
    assert max(r["anchor_accuracy"] for r in rows) > 0.85

    assert th.main(args + ["--write"]) == 0
    meta = ModelMeta.load(folder)
    choice = meta.extra["threshold_choice"]
    assert meta.threshold == choice["threshold"] == d["chosen"]["threshold"]
    assert choice["command"].startswith("python -m bench.threshold --model ") and "--write" in choice["command"]
    assert "0.30-0.60" in choice["rule"] and "80.0 %" in choice["rule"]
    assert choice["threshold_tuned_on_genki4k_val"] == before.extra["threshold_choice"]["threshold_tuned_on_genki4k_val"]
    # the suite read again at the written threshold gives the figure the sweep reported for it
    again = run_suite(folder, str(genki), None, None, split="val", conditions=())
    assert again.checks[0].name == "genki4k-val"
    assert again.checks[0].accuracy == pytest.approx(choice["anchor_accuracy"], abs=1e-4)
    assert "chosen:" in capsys.readouterr().out


def test_the_command_refuses_bad_settings_and_changes_nothing(smile_copy_and_genki, tmp_path, capsys):
    root, genki = smile_copy_and_genki
    folder = _copy_smile(root)
    text = (folder / "metadata.json").read_text()
    assert th.main(["--model", str(folder), "--genki", str(genki), "--lo", "0.7", "--hi", "0.2", "--write"]) == 2
    assert "lo <= hi" in capsys.readouterr().err
    assert th.main(["--model", str(REPO / "models" / "expression"), "--genki", str(genki)]) == 2
    assert "no threshold to choose" in capsys.readouterr().err
    assert th.main(["--model", str(folder), "--genki", str(tmp_path / "none"), "--write"]) == 2
    assert "no GENKI-4K" in capsys.readouterr().err
    assert (folder / "metadata.json").read_text() == text
