"""The command lines as a user runs them (real processes): predict, evaluate, bench."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny_dataset import SHARED, make_class_folders, make_mini_fer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
MEDIA = SHARED / "media"
HAPPY = MEDIA / "expressions" / "happy.jpg"
needs_media = pytest.mark.skipif(not HAPPY.is_file(), reason=f"{MEDIA} is absent (shared media live beside the repo)")
EXPRESSIONS = {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    corrupt = d / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    blank = d / "blank.png"
    Image.new("RGB", (320, 240), (200, 200, 200)).save(blank)
    return {"corrupt": corrupt, "blank": blank}


@needs_media
def test_predict_json_on_a_real_face_and_a_corrupt_file(bad_files):
    proc = cli("core.predict", str(HAPPY), str(bad_files["corrupt"]), "--json")
    assert proc.returncode == 1, proc.stderr            # one file failed
    assert f"error: {bad_files['corrupt']}: " in proc.stderr
    out = json.loads(proc.stdout)                       # stdout stays pure JSON
    assert out["task"] == "smile" and Path(out["model"]).name == "smile"
    happy, corrupt = out["images"]
    assert happy["error"] is None and happy["width"] == 500 and happy["height"] == 282
    (face,) = happy["faces"]
    assert face["label"] in ("smile", "no smile")
    assert abs(face["p_smile"] + face["p_non_smile"] - 1) < 1e-3
    assert 0 <= face["x"] < 500 and face["width"] > 50
    assert corrupt["faces"] == [] and corrupt["error"].startswith(f"{bad_files['corrupt']}: ")


@needs_media
def test_predict_table_no_face_and_annotation(bad_files, tmp_path):
    proc = cli("core.predict", str(HAPPY), str(bad_files["blank"]), str(HAPPY), "--annotate",
               str(tmp_path / "ann"), "--threshold", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert f"{HAPPY} (500x282): 1 face" in proc.stdout
    assert "smile" in proc.stdout
    assert f"{bad_files['blank']} (320x240): no face found" in proc.stdout
    drawn = np.asarray(Image.open(tmp_path / "ann" / "happy.png").convert("RGB"))
    original = np.asarray(Image.open(HAPPY).convert("RGB"))
    assert drawn.shape == original.shape and (drawn != original).any()   # boxes were drawn
    assert (tmp_path / "ann" / "blank.png").is_file()
    assert (tmp_path / "ann" / "happy-2.png").is_file()   # the same name twice in one run is not overwritten


@needs_media
def test_predict_expression_task():
    proc = cli("core.predict", str(HAPPY), "--task", "expression", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["task"] == "expression" and Path(out["model"]).name == "expression"
    (face,) = out["images"][0]["faces"]
    assert face["label"] in EXPRESSIONS
    assert abs(sum(face[f"p_{c}"] for c in EXPRESSIONS) - 1) < 1e-3


@needs_media
def test_predict_with_and_without_test_time_crops(tmp_path):
    """A model whose metadata asks for corner crops answers differently; --no-crops gives flip averaging only."""
    from core.model import CORNER_CROPS
    from test_model import copy_model

    plain = copy_model("expression", tmp_path / "plain", tta_crops=[])
    ten = copy_model("expression", tmp_path / "ten", tta_crops=CORNER_CROPS)

    def probs(*args):
        proc = cli("core.predict", str(HAPPY), "--json", *args)
        assert proc.returncode == 0, proc.stderr
        (face,) = json.loads(proc.stdout)["images"][0]["faces"]
        return np.array([face[f"p_{c}"] for c in sorted(EXPRESSIONS)])

    flip_only = probs("--model", str(plain))
    np.testing.assert_allclose(probs("--model", str(ten), "--no-crops"), flip_only, atol=1e-4)
    assert np.abs(probs("--model", str(ten)) - flip_only).max() > 1e-3


@needs_media
def test_predict_with_a_neutral_offset_reads_a_calm_face_neutral():
    """The bundled model reads the posed sad photo as afraid; `--offset neutral=1.5` (the sidebar's
    highest) reads it neutral, and the JSON says which offsets were applied."""
    sad = MEDIA / "expressions" / "sad.jpg"

    def face(*args):
        proc = cli("core.predict", str(sad), "--task", "expression", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        return out["class_bias"], out["images"][0]["faces"][0]

    own_bias, own = face()
    bias, moved = face("--offset", "neutral=1.5")
    assert own["label"] != "neutral" and moved["label"] == "neutral"
    assert bias[4] == 1.5 and bias[:4] + bias[5:] == own_bias[:4] + own_bias[5:]
    assert moved["p_neutral"] > own["p_neutral"] + 0.1


def _clip(video: Path, out: Path, frames: range) -> Path:
    """Some frames of a video, re-encoded as an MP4."""
    import av

    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 512, 512, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i in frames:
                for packet in stream.encode(frame.reformat(format="yuv420p")):
                    dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out


@needs_media
def test_predict_calibrated_to_a_calm_face(tmp_path, genki_dir, bad_files):
    """`--calm FILE`: a calm GENKI-4K face the bundled expression model reads sad, angry or afraid reads neutral
    once the rule is calibrated to it (only the classes it leaned to lowered: a happy face stays happy); a calm
    stretch of video raises a smile threshold set too low; a real expression, a changing face, or no face is
    refused with the reason, and nothing is labelled."""
    import cv2

    from bench.calibration import leaning_calm_face
    from core.detect import LIVE_DETECTOR, FaceDetector
    from core.model import Classifier
    from core.pipeline import Pipeline

    photo = leaning_calm_face(Pipeline(Classifier(REPO / "models" / "expression"), FaceDetector(LIVE_DETECTOR)),
                              genki_dir)
    calm = tmp_path / "calm.png"
    cv2.imwrite(str(calm), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))

    def run(*args):
        proc = cli("core.predict", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout), proc.stderr

    own, _ = run("--task", "expression", str(calm), str(HAPPY))
    fixed, said = run("--task", "expression", "--calm", str(calm), str(calm), str(HAPPY))
    assert own["images"][0]["faces"][0]["label"] != "neutral" and own["calibration"] is None
    assert fixed["images"][0]["faces"][0]["label"] == "neutral"
    assert fixed["images"][1]["faces"][0]["label"] == "happy"
    changes = fixed["calibration"]["changes"]
    assert fixed["calibration"]["status"] == "calibrated" and changes and "neutral" not in changes
    names = fixed["images"][0]["faces"][0].keys()
    classes = [k[2:] for k in names if k.startswith("p_")]
    for name, before, after in zip(classes, own["class_bias"], fixed["class_bias"]):
        assert abs(after - before - changes.get(name, 0.0)) < 1e-6, (name, before, after)
    assert f"calm face {calm}: Your calm face did not read neutral" in said

    video = MEDIA / "smile_video.mp4"
    calm_clip = _clip(video, tmp_path / "calm.mp4", range(0, 17))
    smile, said = run("--threshold", "0.05", "--calm", str(calm_clip), str(video))
    assert smile["calibration"]["status"] == "calibrated" and 0.05 < smile["threshold"] <= 0.75
    labels = [s["label"] for s in max(smile["images"][0]["faces"], key=lambda f: f["frames"])["stretches"]
              if s["frames"] >= 5]
    assert labels[0] == "no smile" and "smile" in labels, labels
    assert "of the frames" in said

    for calm_file, reason in ((HAPPY, "not a calm face"), (video, "the face changes"),
                              (bad_files["blank"], "No face found"), (bad_files["corrupt"], "--calm: ")):
        proc = cli("core.predict", "--task", "expression", "--calm", str(calm_file), str(HAPPY))
        assert proc.returncode == 2 and reason in proc.stderr and proc.stdout == "", (calm_file, proc.stderr)


@needs_media
def test_evaluate_your_own_collection_under_another_decision_rule(tmp_path, shipped_neutral_offset):
    """The seven posed photos as class folders: `training.evaluate --offset neutral=1.5` reads more of them
    neutral than the model's own rule does, and records the rule it used; a rule the task cannot take is refused."""
    import shutil

    for photo in (MEDIA / "expressions").glob("*.jpg"):
        (tmp_path / "posed" / photo.stem).mkdir(parents=True)
        shutil.copy(photo, tmp_path / "posed" / photo.stem / photo.name)

    def evaluate(*args):
        proc = cli("training.evaluate", "--model", "models/expression", "--data", str(tmp_path / "posed"),
                   "--json", str(tmp_path / "out.json"), *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads((tmp_path / "out.json").read_text())

    own, moved = evaluate(), evaluate("--offset", "neutral=1.5")
    assert own["n_images"] == moved["n_images"] == 7
    assert own["decision"]["class_bias"]["neutral"] == shipped_neutral_offset and moved["decision"]["class_bias"]["neutral"] == 1.5
    neutral = own["class_names"].index("neutral")
    called = lambda ev: sum(row[neutral] for row in ev["confusion_matrix"])   # noqa: E731
    assert called(moved) > called(own)
    proc = cli("training.evaluate", "--model", "models/expression", "--data", str(tmp_path / "posed"),
               "--threshold", "0.5")
    assert proc.returncode == 2 and "--threshold applies to binary tasks" in proc.stderr
    proc = cli("training.evaluate", "--model", "models/smile", "--data", str(tmp_path / "posed"), "--offset", "smile=1")
    assert proc.returncode == 2 and "'smile' uses a threshold" in proc.stderr


def test_predict_a_video_sums_each_face_up_in_stretches_of_one_label(tmp_path, bad_files):
    """The shared face video (neutral, smiling, neutral) through `core.predict`: one face followed over every
    frame, read as no smile, then smile, then no smile; the annotated MP4 has every frame; a file that is not a
    video is an error of its own and the other files are still read."""
    import av

    video = MEDIA / "smile_video.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent (shared media live beside the repo)")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    proc = cli("core.predict", str(broken), str(video), "--json", "--annotate", str(tmp_path / "out"))
    assert proc.returncode == 1 and "broken.mp4" in proc.stderr
    bad, out = json.loads(proc.stdout)["images"]
    assert bad["error"] and out["kind"] == "video" and out["frames"] == 78 and out["error"] is None
    main = max(out["faces"], key=lambda f: f["frames"])
    assert main["frames"] >= 70
    labels = [s["label"] for s in main["stretches"] if s["frames"] >= 5]
    assert labels[0] == "no smile" and "smile" in labels and labels[-1] == "no smile"
    assert sum(s["frames"] for s in main["stretches"]) == main["frames"]
    assert abs(sum(main["label_share"].values()) - 1) < 1e-3
    assert len(out["timeline"]) == sum(f["frames"] for f in out["faces"])
    with av.open(out["annotated"]) as container:
        assert sum(1 for _ in container.decode(video=0)) == 78
    table = cli("core.predict", str(video), "--task", "expression")
    assert table.returncode == 0 and "78 frames" in table.stdout and " s happy" in table.stdout


def test_predict_refuses_bad_options(bad_files):
    proc = cli("core.predict", str(bad_files["blank"]), "--task", "expression", "--threshold", "0.7")
    assert proc.returncode == 2 and "--threshold applies to binary tasks" in proc.stderr
    for offset, said in (("calm=1", "the classes are angry"), ("neutral=x", "'x' is not a number"),
                         ("neutral=9", "between -5 and 5")):
        proc = cli("core.predict", str(bad_files["blank"]), "--task", "expression", "--offset", offset)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    proc = cli("core.predict", str(bad_files["blank"]), "--offset", "neutral=1")
    assert proc.returncode == 2 and "'smile' uses a threshold" in proc.stderr
    proc = cli("core.predict", str(bad_files["blank"]), "--model", str(REPO / "models" / "expression"),
               "--task", "smile")
    assert proc.returncode == 2 and "is a 'expression' model, not a 'smile' model" in proc.stderr
    proc = cli("core.predict", str(bad_files["blank"]), "--model", str(bad_files["blank"].parent))
    assert proc.returncode == 2 and "no metadata.json" in proc.stderr


def test_evaluate_on_a_class_folder_dataset(tmp_path):
    data = make_class_folders(tmp_path / "faces", per_class=12, size=96)
    out = tmp_path / "eval.json"
    env = {**os.environ, "GRIN_CACHE": str(tmp_path / "cache")}
    proc = cli("training.evaluate", "--model", "models/smile", "--data", str(data), "--json", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    for key in ("accuracy", "balanced_accuracy", "per_class", "confusion_matrix", "class_names", "n_images",
                "n_faces_found"):
        assert key in result
    assert result["n_images"] == 24 and result["class_names"] == ["non_smile", "smile"]
    assert sum(map(sum, result["confusion_matrix"])) == 24
    assert set(result["per_class"]) == {"non_smile", "smile"}
    assert json.loads(proc.stdout)["n_images"] == 24


def test_evaluate_refuses_fer_negatives_it_cannot_apply(tmp_path):
    data = make_class_folders(tmp_path / "faces", per_class=2, size=64)
    proc = cli("training.evaluate", "--model", "models/smile", "--data", str(data), "--fer-negatives", "1")
    assert proc.returncode == 2 and "is not FER-2013" in proc.stderr
    proc = cli("training.evaluate", "--model", "models/smile", "--data", str(data), "--fer-negatives", "2")
    assert proc.returncode == 2 and "a fraction in [0, 1], not 2.0" in proc.stderr


def test_evaluate_reports_a_missing_dataset(tmp_path):
    proc = cli("training.evaluate", "--model", "models/smile", "--data", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "no such dataset folder or file" in proc.stderr


@needs_media
def test_bench_writes_the_documented_figures(tmp_path):
    out = tmp_path / "bench.json"
    proc = cli("bench", "--json", str(out), "--iterations", "3", "--min-seconds", "0", "--sweep",
               "--detector", "min_neighbors=5", "--video", "--passes", "1")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    for kind in ("one_face", "four_faces"):
        for part in ("pipeline_ms", "detect_ms"):
            assert r[part][kind]["median"] > 0 and r[part][kind]["p95"] >= r[part][kind]["median"]
    assert r["faces_found"] == {"one_face": 1, "four_faces": 4}
    assert r["classifier_ms"]["batch1"]["median"] > 0 and r["classifier_ms"]["batch32"]["median"] > 0
    assert r["faces_per_second"] > 0 and r["ratio_pipeline_to_detect"] > 0
    assert r["machine"]["cpu_count"] >= 1 and r["machine"]["tensorflow"]
    assert isinstance(r["machine"]["gpu"], bool)
    assert isinstance(r["machine"]["cpu_bf16"], bool) and isinstance(r["machine"]["cpu_model"], str)
    assert "pipeline median" in proc.stdout
    sweep = r["detector_sweep"]
    assert sweep[0]["change"] == {} and sweep[0]["finds_all"] and len(sweep) > 3
    assert all(row["detect_cpu_ms"]["one_face"] > 0 for row in sweep)
    video = r["streams"]["video"]
    assert video["source"] == "<shared>/media/smile_video.mp4" and video["frames"] > 60
    assert video["found_share"]["tracked"] > 0.9 and video["searches"]["near"] > video["searches"]["fine"]
    assert 0.9 <= video["label_agreement"] <= video["label_agreement_unsmoothed"] <= 1
    assert video["tracked_ms"]["mean"] > 0 and "video: " in proc.stdout


@needs_media
def test_bench_reports_a_missing_video_before_timing(tmp_path):
    proc = cli("bench", "--json", str(tmp_path / "b.json"), "--video", str(tmp_path / "none.mp4"))
    assert proc.returncode == 2 and "none.mp4: no such file" in proc.stderr
    assert not (tmp_path / "b.json").exists()


@needs_media
def test_bench_framing_compares_the_three_framings_on_the_posed_photos(tmp_path):
    out = tmp_path / "framing.json"
    proc = cli("bench.framing", "--media", str(MEDIA), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())["posed_photos"]
    assert r["n"] == 7 and r["faces_found"] >= 6
    assert r["both_views"] > r["whole"] and r["detected_face"] > r["whole"]


def test_bench_framing_needs_an_expression_model(tmp_path):
    proc = cli("bench.framing", "--model", "models/smile", "--json", str(tmp_path / "f.json"))
    assert proc.returncode == 2 and "framing is measured with an expression model" in proc.stderr
    assert not (tmp_path / "f.json").exists()


def test_bench_refuses_an_unknown_detector_setting(tmp_path):
    proc = cli("bench", "--json", str(tmp_path / "b.json"), "--detector", "speed=11")
    assert proc.returncode == 2 and "expected KEY=VALUE with KEY one of cascade, max_side" in proc.stderr


def test_bench_without_media_is_a_clear_error(tmp_path):
    proc = cli("bench", "--json", str(tmp_path / "b.json"), "--media", str(tmp_path / "nomedia"))
    assert proc.returncode == 2
    assert "smile_video.mp4: missing" in proc.stderr and "--media" in proc.stderr
    assert not (tmp_path / "b.json").exists()


FER_TEST = SHARED / "datasets" / "fer2013" / "test"


@needs_media
def test_cropped_faces_framed_more_loosely_also_get_a_view_of_the_detected_face(tmp_path):
    """The seven posed photos (276-612 px, head and shoulders) as a class-folder collection: `--faces
    whole` takes each photo as the face; `--faces cropped` averages that with a view framed around the
    detected face, which is how the model's training crops look."""
    root = tmp_path / "posed"
    for photo in sorted((MEDIA / "expressions").glob("*.jpg")):
        (root / photo.stem).mkdir(parents=True)
        (root / photo.stem / photo.name).write_bytes(photo.read_bytes())
    env = {**os.environ, "GRIN_CACHE": str(tmp_path / "cache")}
    results = {}
    for mode in ("whole", "cropped"):
        proc = cli("training.evaluate", "--model", "models/expression", "--data", str(root), "--faces", mode,
                   "--json", str(tmp_path / f"{mode}.json"), env=env)
        assert proc.returncode == 0, proc.stderr
        results[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    whole, cropped = results["whole"], results["cropped"]
    assert whole["n_images"] == cropped["n_images"] == 7 and whole["n_faces_found"] == 0
    assert cropped["n_faces_found"] >= 6          # a face was found, and viewed, in (nearly) every photo
    assert round(cropped["accuracy"] * 7) >= 5 and cropped["accuracy"] > whole["accuracy"]


@pytest.mark.skipif(not FER_TEST.is_dir(), reason=f"{FER_TEST} is absent (shared datasets live beside the repo)")
def test_evaluate_expression_on_a_foreign_cropped_collection(tmp_path):
    """A collection laid out as the issue describes: bigger than 48x48 (96x96 colour), folder names
    from another convention (surprised, fearful) and only some of the seven classes."""
    root = tmp_path / "posed"
    for src, folder in (("happy", "happy"), ("surprise", "surprised"), ("fear", "fearful")):
        (root / folder).mkdir(parents=True)
        for i, path in enumerate(sorted((FER_TEST / src).glob("*.jpg"))[:8]):
            Image.open(path).convert("RGB").resize((96, 96), Image.BICUBIC).save(root / folder / f"{i}.png")
    out = tmp_path / "eval.json"
    env = {**os.environ, "GRIN_CACHE": str(tmp_path / "cache")}
    proc = cli("training.evaluate", "--model", "models/expression", "--data", str(root), "--faces", "cropped",
               "--json", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["n_images"] == 24 and r["faces"] == "cropped" and r["n_faces_found"] == 0
    assert r["class_names"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    cm = np.array(r["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum(1).tolist() == [0, 0, 8, 8, 0, 0, 8]
    assert r["per_class"]["happy"]["recall"] >= 0.5 and r["per_class"]["surprise"]["recall"] >= 0.5
    assert r["accuracy"] > 1 / 3    # well above chance on three classes


@pytest.mark.skipif(not FER_TEST.is_dir(), reason=f"{FER_TEST} is absent (shared datasets live beside the repo)")
def test_evaluate_smile_against_every_other_fer_expression(tmp_path):
    """--fer-negatives 1: FER-2013's six non-happy expressions all count as no-smile faces, and each
    expression's smile rate is reported (happy faces should be called smiles far more than neutral ones)."""
    data = make_mini_fer(tmp_path / "fer", per_class=8)
    out = tmp_path / "eval.json"
    env = {**os.environ, "GRIN_CACHE": str(tmp_path / "cache")}
    proc = cli("training.evaluate", "--model", "models/smile", "--data", str(data), "--split", "test",
               "--fer-negatives", "1", "--json", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    rates = r["smile_rate_by_expression"]
    assert set(rates) == EXPRESSIONS and all(v["n"] == 8 for v in rates.values())
    assert r["n_images"] == 56 and np.array(r["confusion_matrix"]).sum(1).tolist() == [48, 8]
    assert rates["happy"]["smile_rate"] >= 0.75 > rates["neutral"]["smile_rate"] + 0.25
    proc = cli("training.evaluate", "--model", "models/expression", "--data", str(data), "--fer-negatives", "1")
    assert proc.returncode == 2 and "it is for smile models" in proc.stderr


def test_bench_peers_skips_clearly_when_fer_is_not_installed(tmp_path):
    if not (SHARED / "datasets" / "genki4k" / "files").is_dir():
        pytest.skip("GENKI-4K is absent (../shared/datasets/genki4k)")
    out = tmp_path / "peers.json"
    proc = cli("bench.peers", "--json", str(out), "--venv", str(tmp_path / "no-venv"), "--no-install")
    assert proc.returncode == 0 and "skipped: " in proc.stderr and "has no `fer` package" in proc.stderr
    assert not out.exists()


def test_bench_peers_needs_the_faces_it_pastes(tmp_path):
    proc = cli("bench.peers", "--json", str(tmp_path / "p.json"), "--genki", str(tmp_path))
    assert proc.returncode == 2 and "pass GENKI-4K's folder with --genki" in proc.stderr
