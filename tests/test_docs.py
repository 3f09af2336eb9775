"""What a reader gets: model cards in the Hub's form that match their JSON files and what a push uploads,
a command-line reference that matches the parsers, quiet commands, and no machine's paths in the text."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.portable import portable_command, portable_path, portable_paths
from core.progress import ProgressBar
from training import cli_docs, hub
from training.card import render_card, write_card

REPO = Path(__file__).resolve().parents[1]
MODELS = [REPO / "models" / "smile", REPO / "models" / "expression"]
PHOTO = REPO.parent / "shared" / "media" / "expressions" / "happy.jpg"
ABSOLUTE = re.compile(r"(?<![\w<.~-])(/work/|/root/|/home/|/tmp/|/Users/|/mnt/|/var/|[A-Za-z]:\\\\)")


def _words(text: str) -> int:
    """Words a reader reads: the body after the front matter, tokens with a letter or digit (not table rules)."""
    body = text.split("\n---\n", 1)[1]
    return sum(1 for w in body.split() if re.search(r"[A-Za-z0-9]", w))


def _suite(task: str) -> dict:
    """A generalisation.json in the schema of bench.generalisation."""
    if task == "smile":
        names = [("genki4k-test", "benchmark", "GENKI-4K", "test", "as is", 599, 0.9499),
                 ("genki4k-test/loose", "condition", "GENKI-4K", "test", "loose", 599, 0.8731),
                 ("fer2013-test", "benchmark", "FER-2013", "test", "as is", 7178, 0.8105),
                 ("smile-video", "collection", "smile video", "frames", "as is", 66, 0.8333)]
        recall = {"non_smile": 0.8, "smile": 0.9}
    else:
        names = [("fer2013-private-test", "benchmark", "FER-2013", "PrivateTest", "as is", 3589, 0.7116),
                 ("genki4k-test", "collection", "GENKI-4K", "test", "as is", 599, 0.8813)]
        recall = {"happy": 0.9, "neutral": 0.85}
    checks = [{"name": n, "group": g, "dataset": d, "split": s, "condition": c, "n": k, "accuracy": a,
               "balanced_accuracy": round(a - 0.01, 4), "per_class_recall": recall, "predicted_share": {},
               "roc_auc": 0.97 if task == "smile" else None, "note": ""} for n, g, d, s, c, k, a in names]
    worst = min((c for c in checks if c["n"] >= 50), key=lambda c: c["balanced_accuracy"])
    return {"task": task, "model": f"models/{task}", "created": "2026-12-03T10:00:00", "elapsed_s": 1.0,
            "min_n_for_worst": 50, "checks": checks, "worst_balanced_accuracy": worst["balanced_accuracy"],
            "worst_check": worst["name"]}


@pytest.mark.parametrize("folder", MODELS, ids=lambda p: p.name)
def test_bundled_card_is_current_and_is_what_a_push_uploads(folder):
    text = (folder / "README.md").read_text()
    assert text == render_card(folder), f"run: python -m training.card models/{folder.name} --write"
    assert hub.push_files(folder)["README.md"] == text.encode()
    assert (folder / "learning_curves.png").read_bytes() == hub.push_files(folder)["learning_curves.png"]


@pytest.mark.parametrize("folder", MODELS, ids=lambda p: p.name)
def test_bundled_card_is_short_and_the_hub_reads_its_metrics(folder):
    from huggingface_hub import ModelCard

    text = (folder / "README.md").read_text()
    assert _words(text) < 1200
    card = ModelCard(text)
    meta = json.loads((folder / "metadata.json").read_text())
    assert card.data.library_name == "keras" and card.data.license == "other"
    assert f"{meta['task']}-recognition" in card.data.tags
    results = {(r.dataset_name, r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    benchmark = "eval_genki4k_test.json" if meta["task"] == "smile" else "eval_fer2013_private_test.json"
    ev = json.loads((folder / benchmark).read_text())
    split = "test" if meta["task"] == "smile" else "PrivateTest"
    dataset = "GENKI-4K" if meta["task"] == "smile" else "FER-2013"
    assert results[(dataset, split, "accuracy")] == ev["accuracy"]
    assert results[(dataset, split, "balanced_accuracy")] == ev["balanced_accuracy"]
    for heading in ("## Intended use", "## Out-of-scope use", "## How to use", "## Training data and preprocessing",
                    "## Evaluation", "## Calibration", "## Speed", "## Limitations and biases",
                    "## How it was trained", "## Ship rules"):
        assert heading in text, heading
    assert f"expected calibration error {ev['reliability']['ece']}" in text
    assert meta["command"] in text and "<runs>/" in meta["command"]


@pytest.mark.parametrize("task", ["smile", "expression"])
def test_card_takes_its_table_from_the_generalisation_suite_when_it_has_run(task, tmp_path):
    from huggingface_hub import ModelCard

    folder = tmp_path / task
    shutil.copytree(REPO / "models" / task, folder)
    (folder / "README.md").unlink()
    suite = _suite(task)
    (folder / "generalisation.json").write_text(json.dumps(suite))
    text = render_card(folder)
    assert "`python -m bench.generalisation` (`generalisation.json`)" in text
    for c in suite["checks"]:
        assert f"| {c['name']} | {c['dataset']} / {c['split']} | {c['n']:,} | {100 * c['accuracy']:.1f} % |" in text
    assert f"**Worst case**: {suite['worst_check']}, balanced accuracy {100 * suite['worst_balanced_accuracy']:.1f} %" in text
    index = {r.metric_name for r in ModelCard(text).data.eval_results}
    assert {f"accuracy ({c['name']})" for c in suite["checks"] if c["condition"] == "as is" and c["n"] >= 50} == \
        {n for n in index if n.startswith("accuracy")}
    assert _words(text) < 1200


def test_card_says_what_the_model_looks_at_when_explain_json_exists(tmp_path):
    folder = tmp_path / "smile"
    shutil.copytree(REPO / "models" / "smile", folder)
    (folder / "explain.json").unlink(missing_ok=True)
    assert "What the model looks at" not in render_card(folder)
    (folder / "explain.json").write_text(json.dumps({"mouth_share_correct_smiles": 0.61, "random_baseline": 0.333,
                                                     "n": 300, "method": "grad-cam"}))
    assert ("**What the model looks at**: for 300 correctly called smiles, 61 % of the grad-cam heat map lies on "
            "the mouth") in render_card(folder)


def test_card_shows_what_the_neutral_offset_trades_when_its_curve_exists(tmp_path, shipped_neutral_offset):
    folder = tmp_path / "expression"
    shutil.copytree(REPO / "models" / "expression", folder)
    text = render_card(folder)
    assert "## Calm faces and the neutral offset" in text and f"| +{shipped_neutral_offset:.1f} (own) |" in text
    curve = json.loads((folder / "offset_curve.json").read_text())
    own = next(r for r in curve["rows"] if abs(r["offset"] - curve["model_offset"]) < 1e-6)
    assert f"{own['genki4k-train-subset/tight']['recall']:.1%}".replace("%", " %") in text
    (folder / "offset_curve.json").unlink()
    assert "neutral offset" not in render_card(folder)


def test_card_says_where_the_decision_threshold_came_from(tmp_path):
    folder = tmp_path / "smile"
    shutil.copytree(REPO / "models" / "smile", folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["extra"].pop("threshold_choice", None)
    (folder / "metadata.json").write_text(json.dumps(meta))
    assert "chosen on the whole validation suite" not in render_card(folder)
    meta["threshold"] = 0.42
    meta["extra"]["threshold_choice"] = {"threshold_tuned_on_genki4k_val": 0.5, "threshold": 0.42, "rule": "the rule"}
    (folder / "metadata.json").write_text(json.dumps(meta))
    assert ("above probability 0.42, chosen on the whole validation suite (the run's own tuning gave 0.50): "
            "the rule.") in render_card(folder)


def test_card_command_writes_the_card_and_its_curves(tmp_path):
    folder = tmp_path / "expression"
    shutil.copytree(REPO / "models" / "expression", folder)
    for name in ("README.md", "learning_curves.png"):
        (folder / name).unlink()
    r = subprocess.run([sys.executable, "-m", "training.card", str(folder), "--check"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "is out of date" in r.stderr
    r = subprocess.run([sys.executable, "-m", "training.card", str(folder), "--write"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (folder / "README.md").read_text() == (REPO / "models" / "expression" / "README.md").read_text()
    assert (folder / "learning_curves.png").stat().st_size > 1000
    assert write_card(folder) == [folder / "README.md", folder / "learning_curves.png"]


def test_cli_reference_is_what_the_parsers_give():
    assert (REPO / "docs" / "cli.md").read_text() == cli_docs.render(), "run: python -m training.cli_docs --write"
    assert "--fer-negatives FER_NEGATIVES" in cli_docs.render()   # an option of training.train, from its parser


def test_readme_links_the_cli_reference_and_shows_a_screenshot():
    readme = (REPO / "README.md").read_text()
    assert "(docs/cli.md)" in readme
    shot = re.search(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme)
    assert shot and (REPO / shot.group(1)).is_file()
    assert readme.index(shot.group(0)) < readme.index("## ")   # on the first screen, before the first section ends


def test_no_committed_markdown_or_json_holds_a_machines_absolute_path():
    files = subprocess.run(["git", "ls-files", "*.md", "*.json", "*.jsonl"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    found = []
    for name in files:
        if name.startswith("tests/") or not (REPO / name).is_file():
            continue
        for i, line in enumerate((REPO / name).read_text(errors="replace").splitlines(), 1):
            if ABSOLUTE.search(line):
                found.append(f"{name}:{i}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def test_paths_are_recorded_without_the_machines_folders(tmp_path, monkeypatch):
    genki = tmp_path / "somewhere" / "g4k"
    (genki / "files").mkdir(parents=True)
    (genki / "labels.txt").write_text("1 0 0 0\n")
    fer = tmp_path / "fer"
    fer.mkdir()
    (fer / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    monkeypatch.setenv("GRIN_RUNS", str(tmp_path / "runs"))
    assert portable_path(genki) == "<genki4k>"
    assert portable_path(fer) == "<fer2013>" and portable_path(fer / "fer2013.csv") == "<fer2013>/fer2013.csv"
    assert portable_path(tmp_path / "runs" / "smile-a") == "<runs>/smile-a"
    assert portable_path(REPO / "models" / "smile") == "models/smile"
    assert portable_path(tmp_path / "photos") == "<elsewhere>/photos"
    assert portable_path("models/expression") == "models/expression"
    monkeypatch.chdir(tmp_path / "somewhere")          # datasets given relative to where the command runs
    assert portable_paths({"data": "./g4k", "extra": {"../fer": 3}, "note": "a/b"}) == \
        {"data": "<genki4k>", "extra": {"<fer2013>": 3}, "note": "a/b"}
    cmd = portable_command(["python", "-m", "training.train", "--data", str(genki), f"--out={tmp_path}/runs/x",
                            "--lr", "2e-4", "--note", "two words"])
    assert cmd == "python -m training.train --data <genki4k> --out=<runs>/x --lr 2e-4 --note 'two words'"
    monkeypatch.delenv("GRIN_RUNS")   # the default runs folder, inside the repository and ignored by git
    assert portable_path(REPO / "runs" / "smile-a") == "<runs>/smile-a"


def test_progress_bar_draws_with_an_eta_on_a_terminal_only():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe, tty = io.StringIO(), Tty()
    for stream in (pipe, tty):
        bar = ProgressBar("reading faces", stream=stream, interval=0)
        for i in range(1, 5):
            bar(i, 4)
        bar.close()
    assert pipe.getvalue() == ""
    assert tty.getvalue().startswith("\rreading faces [") and "1/4" in tty.getvalue()
    assert tty.getvalue().endswith("4/4 0:00 done\033[K\n")
    half = ProgressBar("x", stream=tty, enabled=True)
    assert half.line(50, 100, now=half.t0 + 30).endswith("50/100 0:30 ETA 0:30")


@pytest.mark.slow
def test_predict_prints_only_its_result_lines():
    """A real run on a real photo: nothing on stderr, and stdout holds only the table."""
    if not PHOTO.is_file():
        pytest.skip(f"needs the demo photos in {PHOTO.parent} (../shared/media/expressions)")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    r = subprocess.run([sys.executable, "-m", "core.predict", str(PHOTO)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == f"{PHOTO} (500x282): 1 face" and lines[1].split()[:2] == ["#", "x"]
    assert len(lines) == 3 and " smile " in lines[2]
    loud = subprocess.run([sys.executable, "-m", "core.predict", str(PHOTO), "--verbose"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0 and loud.stdout == r.stdout


@pytest.mark.slow
def test_model_commands_print_only_their_own_lines(tmp_path):
    """training.ensemble (like every command that loads a model) on the real smile model: TensorFlow's
    start-up lines stay hidden, and --verbose shows them."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    cmd = [sys.executable, "-m", "training.ensemble", "--average", "weights", "--members", "models/smile",
           "models/smile"]
    r = subprocess.run([*cmd, "--out", str(tmp_path / "quiet")], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout.strip() == f"wrote {tmp_path / 'quiet'}"
    loud = subprocess.run([*cmd, "--out", str(tmp_path / "loud"), "--verbose"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0 and loud.stderr != "", "--verbose keeps TensorFlow's lines"


def test_a_card_names_each_training_machine_once():
    """Members trained on several machines of one kind share one phrase, each CPU model listed once."""
    from training.card_data import machines_line

    a = {"cpu": "AMD EPYC", "cpus": 2, "gpus": 0}
    b = {"cpu": "Intel Xeon", "cpus": 2, "gpus": 0}
    gpu = {"cpu": "AMD EPYC", "cpus": 16, "gpus": 1}
    assert machines_line([a, b, a]) == "2 CPU cores (AMD EPYC; Intel Xeon), no GPU"
    assert machines_line([a, gpu, {}]) == ("2 CPU cores (AMD EPYC), no GPU and 16 CPU cores (AMD EPYC), 1 GPU and "
                                           "a machine its metadata does not record")
