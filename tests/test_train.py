"""Real (tiny) training runs: the run folder's files, stop, resume, and settings refused with a reason."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.model import Classifier, ModelMeta
from tiny_dataset import FER, make_class_folders, make_mini_fer
from training.card import render_card
from training.card_data import lineage
from training.config import Augment, ConfigError, TrainConfig
from training.data import prepare
from training.launcher import summary
from training.split import SplitConfig
from training.runs import Run
from training.train import main, train

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"epoch", "epochs", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time",
               "val_confusion", "best_val_accuracy"}
QUICK = ["--task", "smile", "--width", "8", "--batch-size", "8", "--limit", "40", "--precision", "float32",
         "--warmup-epochs", "0", "--seed", "3"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """60 small face images in smile/ and non_smile/ (GENKI-4K photos when ../shared is there)."""
    return make_class_folders(tmp_path_factory.mktemp("data") / "faces", per_class=30, size=72)


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """The tiny datasets' face crops go to a temporary cache, not the user's."""
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run_main(argv: list[str]) -> int:
    """`python -m training.train` in this process (its SIGTERM handler is put back afterwards)."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        return main(argv)
    finally:
        signal.signal(signal.SIGTERM, handler)


@pytest.fixture(scope="module")
def finished_run(faces, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "one-epoch"
    assert run_main([*QUICK, "--data", str(faces), "--out", str(out), "--epochs", "1"]) == 0
    return out


def test_one_epoch_run_writes_every_file(finished_run):
    run = Run(finished_run)
    cfg = run.config()
    assert cfg["config"]["epochs"] == 1 and cfg["config"]["width"] == 8
    assert cfg["command"].startswith("python -m training.train")
    assert TrainConfig.from_dict(cfg["config"]).limit == 40
    rows = run.metrics()
    assert len(rows) == 1 and METRIC_KEYS <= set(rows[0])
    row = rows[0]
    assert row["epoch"] == 1 and row["epochs"] == 1
    assert 0 <= row["val_accuracy"] <= 1 and row["loss"] > 0 and row["lr"] > 0
    assert len(row["val_confusion"]) == 2 and sum(map(sum, row["val_confusion"])) > 0
    assert run.status()["state"] == "finished"
    ev = run.evaluation()
    assert {"accuracy", "balanced_accuracy", "per_class", "confusion_matrix"} <= set(ev)
    assert ev["n_images"] > 0
    assert run.has_model() and run.file("checkpoint.keras").is_file()


def test_the_run_model_loads_like_a_shipped_one(finished_run):
    clf = Classifier(finished_run)
    assert clf.task.name == "smile" and clf.meta.arch
    assert "test_accuracy" in clf.meta.metrics
    import numpy as np

    probs = clf.predict(np.zeros((3, 64, 64, 1), np.uint8))
    assert probs.shape == (3, 2)


def test_an_existing_run_folder_is_not_overwritten(finished_run, faces, capsys):
    before = finished_run.joinpath("metrics.jsonl").read_bytes()
    assert run_main([*QUICK, "--data", str(faces), "--out", str(finished_run), "--epochs", "1"]) == 2
    assert "already holds a run: pass --resume" in capsys.readouterr().err
    assert finished_run.joinpath("metrics.jsonl").read_bytes() == before


def test_stop_file_stops_the_run_and_resume_finishes_it(faces, tmp_path):
    """Stop during epoch 1 of 2 (a STOP file, as the app's Stop button writes), then --resume."""
    out = tmp_path / "stop-resume"
    cfg = TrainConfig(task="smile", data=str(faces), width=8, epochs=2, batch_size=4, limit=40,
                      precision="float32", warmup_epochs=0, seed=3)
    errors: list[BaseException] = []

    def target():
        try:
            train(cfg, out)
        except BaseException as exc:   # reported by the test below
            errors.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    run = Run(out)
    deadline = time.time() + 300
    while worker.is_alive() and run.status().get("state") != "running" and time.time() < deadline:
        time.sleep(0.02)
    run.request_stop()          # before the first training batch ends
    worker.join(timeout=300)
    assert not worker.is_alive() and not errors, errors
    assert run.status()["state"] == "stopped"
    assert [r["epoch"] for r in run.metrics()] == [1]
    assert run.has_model() and run.file("checkpoint.keras").is_file()

    assert run_main(["--out", str(out), "--resume"]) == 0
    assert not run.stop_requested()
    assert [r["epoch"] for r in run.metrics()] == [1, 2]
    assert run.status()["state"] == "finished"
    assert run.config()["config"]["epochs"] == 2
    assert run.evaluation()["n_images"] > 0


def test_fer_negatives_without_fer2013_is_refused(faces, tmp_path, capsys):
    assert run_main([*QUICK, "--data", str(faces), "--out", str(tmp_path / "r"), "--fer-negatives", "0.3"]) == 2
    assert "--fer-negatives takes its no-smile faces from FER-2013" in capsys.readouterr().err


def test_skip_test_leaves_the_test_split_unread(faces, tmp_path):
    """--skip-test: a run for choosing a recipe on validation ends without a test figure anywhere."""
    out = tmp_path / "no-test"
    assert run_main([*QUICK, "--data", str(faces), "--out", str(out), "--epochs", "1", "--skip-test"]) == 0
    run = Run(out)
    assert run.status()["state"] == "finished" and run.has_model()
    assert run.evaluation() == {} and not run.file("eval.json").exists()
    assert "test_accuracy" not in json.loads(run.file("metadata.json").read_text())["metrics"]
    row = summary(run)   # the training page lists it with an empty test column
    assert row["run"] == "no-test" and row["test acc"] is None and row["best val acc"] is not None


def test_resume_without_a_checkpoint_is_refused(tmp_path, capsys):
    assert run_main(["--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


@pytest.mark.parametrize("args, reason", [
    (["--epochs", "0"], "epochs must be between 1 and 1000, not 0"),
    (["--lr", "5"], "learning rate must be in (0, 1], not 5.0"),
    (["--dropout", "1.5"], "dropout must be in [0, 1), not 1.5"),
    (["--optimizer", "magic"], "optimizer must be one of adamw, adam, sgd"),
    (["--task", "age"], "task must be one of smile, expression, not 'age'"),
    (["--arch", "huge"], "architecture must be one of"),
    (["--split-seed", "-1"], "split seed must be between 0 and 4294967295, not -1"),
    (["--fer-negatives", "1.5"], "FER-2013 negatives must be a fraction in [0, 1], not 1.5"),
    (["--task", "expression", "--fer-negatives", "0.3"], "FER-2013 negatives (other expressions as no-smile "
                                                          "faces) are for the smile task"),
    (["--task", "expression", "--init", str(REPO / "models" / "smile")],
     "a 'compact' network, and this run builds 'expression': choose that architecture (--arch compact)"),
    (["--arch", "expression", "--init", str(REPO / "models" / "expression")],
     "a network of width 40, and this run asks for --width 8: leave --width out to take that model's"),
    (["--arch", "hog_svm", "--init", str(REPO / "models" / "smile")], "the 'hog_svm' baseline is not a network"),
    (["--input-size", "8"], "input size must be 0 (the task's) or 32 to 256 pixels, not 8"),
    (["--equalize", "magic"], "equalize must be one of none, clahe, not 'magic'"),
    (["--jpeg", "0.3", "--deblock", "5"], "deblock must be a blur sigma from 0 (off) to 3.0 px, not 5.0"),
    (["--deblock", "1"], "deblock blurs compressed training faces: it needs --jpeg above 0"),
    (["--teacher", "nowhere"], "--teacher nowhere: no model.keras there to learn from"),
    (["--task", "expression", "--teacher", str(REPO / "models" / "smile")],
     "is a model for the smile task, which cannot teach a run of the expression task"),
    (["--teacher", str(REPO / "models" / "smile"), "--equalize", "clahe"],
     "takes faces equalised 'none', and this run cuts them 'clahe': choose --equalize none"),
    (["--teacher", str(REPO / "models" / "smile"), "--distill", "1.5"],
     "the distillation weight must be in [0, 1], not 1.5"),
    (["--teacher", str(REPO / "models" / "smile"), "--distill", "0.8", "--class-weights", "sqrt"],
     "lower --distill, or use --class-weights none or per-collection"),
    (["--teacher", str(REPO / "models" / "smile"), "--distill-on", "extra"],
     "it needs both --teacher and --extra-data"),
    (["--teacher", str(REPO / "models" / "smile"), "--teacher", str(REPO / "models" / "smile")],
     "each --teacher is named once"),
])
def test_bad_settings_are_refused_before_anything_runs(args, reason, faces, tmp_path, capsys):
    out = tmp_path / "never"
    assert run_main([*QUICK, "--data", str(faces), "--out", str(out), *args]) == 2
    assert reason in capsys.readouterr().err
    assert not out.exists()


def test_missing_dataset_is_refused(tmp_path, capsys):
    assert run_main([*QUICK, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "no such dataset folder or file" in capsys.readouterr().err


def test_the_command_line_refuses_bad_settings_with_exit_code_2(faces, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "training.train", "--data", str(faces), "--out",
                           str(tmp_path / "r"), "--batch-size", "0"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert "error: batch size must be between 1 and 4096, not 0" in proc.stderr


def test_every_training_option_is_documented_with_its_choices():
    from training.architectures import ARCHITECTURES
    from training.baselines import BASELINES
    from training.config import CLASS_WEIGHTS, OPTIMIZERS, PRECISIONS, SCHEDULES
    from training.train_args import build_parser

    parser = build_parser()
    bare = [a.option_strings[0] for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert not bare, f"options without help: {bare}"
    settings = set(TrainConfig().to_dict()) - {"augment", "tta_flip"}
    flags = {o for a in parser._actions for o in a.option_strings}
    assert {"--" + s.replace("_", "-") for s in settings} <= flags   # every setting has its option
    text = " ".join(parser.format_help().split())
    for choices in (OPTIMIZERS, SCHEDULES, CLASS_WEIGHTS, PRECISIONS, (*ARCHITECTURES, *BASELINES)):
        assert ", ".join(choices) in text
    assert "(default: 0.002)" in text and "smile or expression (default: smile)" in text


def test_config_from_dict_refuses_unknown_settings():
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        TrainConfig.from_dict({"task": "smile", "colour": "red"})
    cfg = TrainConfig(data="x", epochs=3)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_the_seed_leaves_the_split_alone(finished_run):
    """--seed 3 changes weights and shuffling, not the split (kept at --split-seed 42), so runs with
    different seeds are scored on the same validation faces and can be compared or ensembled."""
    cfg = Run(finished_run).config()["config"]
    assert cfg["seed"] == 3 and cfg["split_seed"] == 42
    meta = json.loads((finished_run / "metadata.json").read_text())
    assert meta["extra"]["split"]["seed"] == 42
    row = summary(Run(finished_run))          # the training page's table of runs shows both
    assert (row["seed"], row["split seed"]) == (3, 42)


def test_runs_made_before_the_split_seed_existed_keep_their_split():
    old = {k: v for k, v in TrainConfig(data="x", seed=7).to_dict().items() if k != "split_seed"}
    assert TrainConfig.from_dict(old).split_seed == 7


def test_fit_val_trains_on_the_validation_faces_and_keeps_the_last_epoch(finished_run, faces, tmp_path):
    """A final model (--fit-val): the validation faces join training, the test faces stay out, the
    last epoch is kept, and the threshold comes from the --init model (nothing unseen to tune on)."""
    out = tmp_path / "final"
    init = tmp_path / "init"
    init.mkdir()
    for name in ("model.keras", "metadata.json"):
        (init / name).write_bytes((finished_run / name).read_bytes())
    meta = json.loads((init / "metadata.json").read_text())
    meta["threshold"] = 0.62
    (init / "metadata.json").write_text(json.dumps(meta))
    assert run_main([*QUICK, "--data", str(faces), "--out", str(out), "--epochs", "2", "--init", str(init),
                     "--fit-val", "--limit", "0"]) == 0
    before = prepare("smile", str(faces), SplitConfig()).summary()["split_sizes"]
    after = json.loads((out / "metadata.json").read_text())
    sizes = after["extra"]["data"]["split_sizes"]
    assert sizes["train"] == before["train"] + before["val"] and sizes["test"] == before["test"]
    assert after["metrics"]["epoch"] == 2 and after["metrics"]["fit_val"] is True
    assert "val_accuracy" not in after["metrics"]
    assert after["threshold"] == 0.62
    assert all(r["val_in_training"] for r in Run(out).metrics())
    card = render_card(out)
    assert "also trained on the validation faces (`--fit-val`), so it has no validation figure: the last epoch (2) " \
           "is kept, with the decision threshold of its `--init` model" in card


@pytest.mark.parametrize("args, reason", [
    (["--patience", "3"], "nothing is left to stop early on"),
    (["--swa-epochs", "1"], "nothing is left to judge the weight average on"),
    (["--arch", "hog_svm"], "nothing is left to report a baseline's validation figures on"),
])
def test_fit_val_refuses_settings_that_need_validation(args, reason, faces, tmp_path, capsys):
    assert run_main([*QUICK, "--data", str(faces), "--out", str(tmp_path / "r"), "--fit-val", *args]) == 2
    assert reason in capsys.readouterr().err


def test_distillation_learns_from_the_teachers_probabilities(faces, tmp_path):
    """--teacher: the shipped smile model labels the training faces once (kept in the run folder for a
    resume), and the targets are the blend of true labels and its probabilities."""
    from training.distill import TEACHER_FILE
    from training.train import make_dataset

    out = tmp_path / "student"
    teacher = REPO / "models" / "smile"
    assert run_main([*QUICK, "--data", str(faces), "--out", str(out), "--epochs", "1", "--teacher", str(teacher),
                     "--distill", "0.5", "--limit", "0"]) == 0
    assert Run(out).status()["state"] == "finished" and Run(out).has_model()
    soft = np.load(out / TEACHER_FILE)
    part = prepare("smile", str(faces), SplitConfig()).parts["train"]
    assert soft.shape == (len(part.y), 2)
    assert np.allclose(soft, Classifier(teacher, warm_up=False, exact=True).predict(part.x), atol=1e-5)   # float32
    cfg = TrainConfig(data=str(faces), teacher=str(teacher), distill=0.5, batch_size=len(part.y))
    _, targets = next(iter(make_dataset(part, 2, cfg, False, 64, soft)))
    assert np.allclose(targets.numpy(), 0.5 * np.eye(2)[part.y] + 0.5 * soft, atol=1e-6)
    assert (targets.numpy().argmax(1) == part.y).all()   # class weights still follow the true labels


def test_an_expression_model_teaches_a_smile_run_through_its_happy_probability(faces, tmp_path):
    """--teacher models/expression on a smile run: the 48 px network sees the 64 px crops resized, and
    its P(happy) is the smile target, 1 - P(happy) the no-smile one."""
    import cv2

    from training.distill import TEACHER_FILE

    out = tmp_path / "student"
    teacher = REPO / "models" / "expression"
    assert run_main([*QUICK, "--data", str(faces), "--out", str(out), "--epochs", "1", "--teacher", str(teacher),
                     "--distill", "0.5", "--limit", "0", "--skip-test"]) == 0
    soft = np.load(out / TEACHER_FILE)
    part = prepare("smile", str(faces), SplitConfig()).parts["train"]
    clf = Classifier(teacher, warm_up=False, exact=True)   # the targets are float32 probabilities
    small = np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_AREA) for f in part.x])[..., None]
    happy = clf.predict(small)[:, list(clf.task.class_names).index("happy")]
    assert soft.shape == (len(part.y), 2)
    assert np.allclose(soft[:, 1], happy, atol=1e-5) and np.allclose(soft.sum(1), 1.0, atol=1e-5)
    if (part.y == 1).any() and (part.y == 0).any():   # on real smiles the teacher's P(happy) is higher
        assert soft[part.y == 1, 1].mean() > soft[part.y == 0, 1].mean()


def test_two_teachers_teach_the_mean_of_their_probabilities(faces, tmp_path):
    """--teacher twice: each teacher labels the faces once (its own cache in the run folder), and the
    targets blend the true labels with the mean of the two; an old run's one teacher reads as a list."""
    from training.distill import TEACHER_FILE, mean_teacher_probs, teacher_file
    from training.train import make_dataset

    out = tmp_path / "student"
    smile, expression = REPO / "models" / "smile", REPO / "models" / "expression"
    assert run_main([*QUICK, "--data", str(faces), "--out", str(out), "--epochs", "1", "--teacher", str(smile),
                     "--teacher", str(expression), "--distill", "0.5", "--limit", "0", "--skip-test"]) == 0
    assert Run(out).config()["config"]["teacher"] == [str(smile), str(expression)]
    first, second = np.load(out / TEACHER_FILE), np.load(out / teacher_file(1))
    part = prepare("smile", str(faces), SplitConfig()).parts["train"]
    assert np.allclose(first, Classifier(smile, warm_up=False, exact=True).predict(part.x), atol=1e-5)
    assert second.shape == first.shape and not np.allclose(first, second, atol=1e-3)   # two different readings
    cfg = TrainConfig(data=str(faces), teacher=[str(smile), str(expression)], batch_size=len(part.y))
    soft = mean_teacher_probs(cfg.teacher, part.x, out)   # what the run trained on, read from its caches
    assert np.allclose(soft, (first + second) / 2, atol=1e-6)
    _, targets = next(iter(make_dataset(part, 2, cfg, False, 64, soft)))
    assert np.allclose(targets.numpy(), 0.5 * np.eye(2)[part.y] + 0.25 * (first + second), atol=1e-6)
    assert TrainConfig.from_dict({"teacher": str(smile)}).teacher == [str(smile)]
    records = ModelMeta.load(out).extra["teachers"]   # each teacher as it was when the run began
    assert [r["task"] for r in records] == ["smile", "expression"]
    assert "models/smile as of 20" in records[0]["folder"] and "models/expression as of 20" in records[1]["folder"]
    card = render_card(out)
    assert "the mean of the smile model's probabilities and the expression model's P(happy)" in card
    assert records[1]["folder"] in card


def test_per_collection_weights_balance_each_collection_and_keep_its_share(faces, tmp_path):
    """--class-weights per-collection: row weights (true labels) that make the main dataset and the
    extra data each class-balanced, each keeping its share of the rows; the training pipeline carries them
    through every augmentation, and a run under a strong teacher may use them."""
    from training.train import collection_weights, make_dataset

    extra = make_class_folders(tmp_path / "extra", per_class=30, size=72, seed=5)
    for f in sorted((extra / "smile").iterdir())[8:]:   # an extra collection with few smiles, as FER-2013 has
        f.unlink()
    part = prepare("smile", str(faces), SplitConfig(), extra_data=[str(extra)]).parts["train"]
    w = collection_weights(part.y, part.index, 2)
    for rows in (part.index >= 0, part.index < 0):
        per_class = [w[rows & (part.y == k)].sum() for k in (0, 1)]
        assert np.isclose(per_class[0], per_class[1]) and np.isclose(sum(per_class), rows.sum())
    extra_rows = part.index < 0
    assert w[extra_rows & (part.y == 1)].min() > 2 * w[extra_rows & (part.y == 0)].max()   # its few smiles count more
    cfg = TrainConfig(data=str(faces), class_weights="per-collection", batch_size=len(part.y),
                      augment=Augment(tight=0.5, shift=0.1, erasing=0.25))
    x, targets, carried = next(iter(make_dataset(part, 2, cfg, True, 64)))
    assert x.shape[0] == len(part.y) and np.allclose(np.sort(carried.numpy()), np.sort(w))
    assert len(next(iter(make_dataset(part, 2, cfg, False, 64)))) == 2   # validation: no weights
    out = tmp_path / "student"
    assert run_main([*QUICK, "--data", str(faces), "--extra-data", str(extra), "--out", str(out), "--epochs", "1",
                     "--class-weights", "per-collection", "--teacher", str(REPO / "models" / "smile"),
                     "--distill", "0.7", "--limit", "0", "--skip-test", "--jpeg", "0.5", "--deblock", "1.0"]) == 0
    assert Run(out).status()["state"] == "finished"
    # deblocked compressed faces in training: the model is served with the same gated blur
    assert json.loads((out / "metadata.json").read_text())["preprocess"]["deblock"] == 1.0


@pytest.mark.skipif(not FER.is_dir(), reason=f"{FER} is absent (shared datasets live beside the repo)")
def test_distill_on_extra_leaves_the_main_datasets_faces_to_their_true_labels(faces, tmp_path):
    """--distill-on extra: the expression teacher labels every training face once (the cache is the same
    as with --distill-on all), but only the --extra-data collection's faces (FER-2013's) learn from it;
    the main dataset's faces keep their one-hot true labels."""
    from training.distill import TEACHER_FILE, teacher_rows
    from training.train import make_dataset

    fer = make_mini_fer(tmp_path / "fer", per_class=6)
    out = tmp_path / "student"
    teacher = REPO / "models" / "expression"
    assert run_main([*QUICK, "--data", str(faces), "--extra-data", str(fer), "--out", str(out), "--epochs", "1",
                     "--teacher", str(teacher), "--distill", "0.5", "--distill-on", "extra", "--limit", "0",
                     "--skip-test"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["distill_on"] == "extra"
    part = prepare("smile", str(faces), SplitConfig(), extra_data=[str(fer)]).parts["train"]
    soft = np.load(out / TEACHER_FILE)
    taught = teacher_rows(part.index, "extra")
    assert soft.shape == (len(part.y), 2) and 0 < taught.sum() < len(part.y)   # both kinds of rows
    cfg = TrainConfig(data=str(faces), extra_data=[str(fer)], teacher=str(teacher), distill=0.5,
                      distill_on="extra", batch_size=len(part.y))
    _, targets = next(iter(make_dataset(part, 2, cfg, False, 64, soft)))   # the targets the run trains on
    targets = targets.numpy()
    assert np.array_equal(targets[~taught], np.eye(2)[part.y[~taught]])
    assert np.allclose(targets[taught], 0.5 * np.eye(2)[part.y[taught]] + 0.5 * soft[taught], atol=1e-6)
    assert not np.allclose(soft[taught], np.eye(2)[part.y[taught]], atol=1e-3)   # the teacher did say something


def test_a_model_of_another_task_starts_a_run(faces, tmp_path):
    """Transfer learning: a smile run from the bundled seven-expression network takes its width and every
    layer's weights but the output layer, which starts fresh with two classes."""
    import keras

    from training.architectures import build_model
    from training.lineage import load_init_weights

    source = REPO / "models" / "expression"
    out = tmp_path / "transfer"
    assert run_main([*QUICK, "--width", "0", "--data", str(faces), "--out", str(out), "--epochs", "1",
                     "--lr", "1e-6", "--arch", "expression", "--init", str(source), "--skip-test"]) == 0
    assert Run(out).config()["config"]["width"] == 40
    theirs = keras.saving.load_model(source / "model.keras", compile=False)
    ours = keras.saving.load_model(out / "model.keras", compile=False)
    conv = [(a, b) for a, b in zip(theirs.layers, ours.layers) if isinstance(a, keras.layers.Conv2D)]
    assert len(conv) == 8 and all(np.allclose(a.get_weights()[0], b.get_weights()[0], atol=1e-3) for a, b in conv)
    assert ours.output_shape == (None, 2) and theirs.output_shape == (None, 7)

    narrow = build_model("expression", (64, 64, 1), 2, width=32)
    with pytest.raises(ConfigError, match=r"--init .*: its layer '.*' has weights of shape .*same --width"):
        load_init_weights(narrow, str(source))


def test_a_model_at_another_face_size_serves_fine_tunes_and_explores(faces, tmp_path):
    """--input-size and --equalize: an 80-px, contrast-equalised smile model labels faces through the
    pipeline, a fine-tune from it keeps both, and the explorer cuts the test faces that way for its mistakes."""
    import cv2

    from core.pipeline import Pipeline
    from training import explore

    out = tmp_path / "px80"
    assert run_main([*QUICK, "--input-size", "80", "--equalize", "clahe", "--data", str(faces), "--out", str(out),
                     "--epochs", "1"]) == 0
    clf = Classifier(out)
    assert clf.preprocess.input_size == 80 and clf.model.input_shape == (None, 80, 80, 1)
    assert clf.preprocess.equalize == "clahe"
    image = cv2.cvtColor(cv2.imread(str(next((faces / "smile").glob("*.png")))), cv2.COLOR_BGR2RGB)
    (face,) = Pipeline(clf).classify(image, [(0, 0, image.shape[1], image.shape[0])])
    assert face.probs.shape == (2,) and abs(float(face.probs.sum()) - 1) < 1e-4

    tuned = tmp_path / "px80-tuned"
    assert run_main([*QUICK, "--init", str(out), "--data", str(faces), "--out", str(tuned), "--epochs", "1",
                     "--skip-test"]) == 0
    assert Run(tuned).config()["config"]["input_size"] == 80
    source, meta = ModelMeta.load(out), ModelMeta.load(tuned)      # the fine-tune records where it started
    assert meta.extra["init"]["folder"].startswith("run px80, ") and meta.extra["init"]["command"] == source.command
    assert [s.command for s in lineage(tuned, meta)] == [source.command, meta.command]    # the card's steps
    assert Classifier(tuned).preprocess.equalize == "clahe"
    assert Classifier(tuned).model.input_shape == (None, 80, 80, 1)

    view = explore.load_view(faces, "smile", explore.split_config_for(out))
    assert view.crops.shape[1:] == (64, 64, 1)          # the explorer's own crops: the task's size
    mistakes = explore.model_mistakes(view, out)
    assert mistakes.n > 0 and mistakes.confusion.sum() == mistakes.n
