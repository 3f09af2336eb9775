"""Deblocking: the JPEG block measure and the gated blur on a real face photo, the rule of
`bench.deblock` on readings the tests make and, end to end, on the shipped smile model and real
GENKI-4K photos."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest

from bench import deblock as db
from bench.conditions import jpeg
from bench.generalisation import MIN_N_WORST, run_suite
from core.model import ModelError, ModelMeta
from core.preprocess import DEBLOCK_GATE, PreprocessConfig, crop_box, crop_faces, jpeg_blockiness
from tests.conftest import EXPRESSIONS, REPO, need
from tests.tiny_dataset import GENKI, make_mini_genki
from training.card import trained_deblocks


@pytest.fixture(scope="module")
def photo_and_box():
    """A real posed photo (gray, as the smile and expression models take it) and its face box."""
    from core.detect import FaceDetector

    gray = cv2.imread(str(need(EXPRESSIONS / "happy.jpg")), cv2.IMREAD_GRAYSCALE)
    boxes = FaceDetector().detect(gray, thorough=True)
    assert boxes, "the detector finds the face of the happy photo"
    return gray, boxes[0]


def test_blockiness_tells_a_heavily_compressed_photo_from_the_photo(photo_and_box):
    gray, box = photo_and_box
    squeezed = jpeg(gray, box, quality=10)
    assert jpeg_blockiness(gray) < DEBLOCK_GATE <= jpeg_blockiness(squeezed)
    # on the face's own patch, measured on the grid of the picture it was cut from
    x0, y0, side = crop_box(box, PreprocessConfig())
    x0, y0 = max(0, x0), max(0, y0)
    patch = squeezed[y0:y0 + side, x0:x0 + side]
    right = jpeg_blockiness(patch, x0, y0)
    assert right >= DEBLOCK_GATE
    assert jpeg_blockiness(patch, x0 + 4, y0 + 4) < right - 0.3   # the grid moved half a block: much less
    assert jpeg_blockiness(np.zeros((10, 40), np.uint8)) == 0.0        # too small to tell


def test_deblocking_blurs_only_the_crops_cut_from_a_blocky_picture(photo_and_box):
    gray, box = photo_and_box
    plain, deblocked = PreprocessConfig(), PreprocessConfig(deblock=1.0)
    # the photo as stored: the same pixels with deblocking on
    np.testing.assert_array_equal(crop_faces(gray, [box], plain), crop_faces(gray, [box], deblocked))
    squeezed = jpeg(gray, box, quality=10)
    before, after = crop_faces(squeezed, [box], plain)[0], crop_faces(squeezed, [box], deblocked)[0]
    np.testing.assert_array_equal(after[:, :, 0], cv2.GaussianBlur(before[:, :, 0], (0, 0), 1.0))
    assert np.abs(after.astype(int) - before).mean() > 1   # block edges smoothed away
    rgb = cv2.cvtColor(squeezed, cv2.COLOR_GRAY2RGB)       # a colour model's crop is deblocked alike
    rgb_cfg = PreprocessConfig(color_mode="rgb", deblock=1.0)
    assert not np.array_equal(crop_faces(rgb, [box], rgb_cfg), crop_faces(rgb, [box], replace(rgb_cfg, deblock=0.0)))


def test_deblocking_off_keeps_the_settings_models_and_caches_were_made_with():
    assert "deblock" not in PreprocessConfig().to_dict()
    on = PreprocessConfig(deblock=1.0)
    assert on.to_dict()["deblock"] == 1.0 and PreprocessConfig.from_dict(on.to_dict()) == on
    meta = ModelMeta.load(REPO / "models" / "expression")
    meta.preprocess = {**meta.preprocess, "deblock": 9.0}
    with pytest.raises(ModelError, match="deblocking sigma 9.0"):
        meta.validate()


def test_the_rule_takes_the_sigma_that_lifts_the_worst_case_without_costing_another_check():
    base = {"genki4k-val": 0.94, "fer2013-val/jpeg10": 0.873, "fer2013-val/low-contrast": 0.885}
    readings = {0.0: base,
                0.7: {**base, "fer2013-val/jpeg10": 0.881},
                1.0: {**base, "fer2013-val/jpeg10": 0.886, "genki4k-val": 0.938},
                1.5: {**base, "fer2013-val/jpeg10": 0.89, "genki4k-val": 0.93}}   # genki falls a point
    rows = db.rows_from_readings(readings, db.DeblockConfig(sigmas=(0.7, 1.0, 1.5), max_drop=0.003))
    by = {r.sigma: r for r in rows}
    assert [r.sigma for r in rows] == [0.0, 0.7, 1.0, 1.5] and not by[0.0].eligible
    assert by[0.7].eligible and by[0.7].worst_check == "fer2013-val/jpeg10"
    assert by[1.0].eligible and by[1.0].worst_check == "fer2013-val/low-contrast"
    assert by[1.0].largest_drop == pytest.approx(0.002) and by[1.0].largest_drop_check == "genki4k-val"
    assert not by[1.5].eligible and by[1.5].largest_drop == pytest.approx(0.01)
    assert db.choose(rows).sigma == 1.0
    # a tie goes to the smaller sigma; a worst case that does not rise leaves deblocking off
    tie = db.rows_from_readings({0.0: base, 0.7: readings[1.0], 1.0: readings[1.0]}, db.DeblockConfig())
    assert db.choose(tie).sigma == 0.7
    flat = db.rows_from_readings({0.0: base, 1.0: {**base, "genki4k-val": 0.95}}, db.DeblockConfig())
    assert db.choose(flat).sigma == 0.0 and not any(r.eligible for r in flat)


def test_what_the_rule_refuses():
    base = {"genki4k-val": 0.9}
    with pytest.raises(db.DeblockError, match="sigma 0"):
        db.rows_from_readings({1.0: base}, db.DeblockConfig())
    with pytest.raises(db.DeblockError, match="other checks"):
        db.rows_from_readings({0.0: base, 1.0: {"fer2013-val": 0.9}}, db.DeblockConfig())
    for bad in (db.DeblockConfig(sigmas=()), db.DeblockConfig(sigmas=(0.0,)), db.DeblockConfig(sigmas=(5.0,)),
                db.DeblockConfig(max_drop=-0.1)):
        with pytest.raises(db.DeblockError):
            bad.validate()
    small = [{"name": "posed-photos", "n": MIN_N_WORST - 1, "balanced_accuracy": 0.1},
             {"name": "genki4k-val", "n": MIN_N_WORST, "balanced_accuracy": 0.9}]
    assert db.counted(small) == {"genki4k-val": 0.9}


@pytest.fixture(scope="module")
def smile_copy_and_genki(tmp_path_factory):
    if not GENKI.is_dir():
        pytest.skip(f"{GENKI} is absent: deblocking is chosen on GENKI-4K's validation photos")
    root = tmp_path_factory.mktemp("deblock")
    genki = make_mini_genki(root / "genki", per_class=200)   # about 60 validation photos, over MIN_N_WORST
    folder = root / "smile"
    shutil.copytree(REPO / "models" / "smile", folder)
    meta = ModelMeta.load(folder)
    meta.preprocess = replace(meta.preprocess_config, deblock=0.0).to_dict()   # start from deblocking off
    meta.save(folder)
    return folder, genki


@pytest.mark.slow
def test_deblocking_changes_how_compressed_faces_read_and_leaves_the_rest(smile_copy_and_genki, tmp_path, monkeypatch):
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path / "cache"))
    folder, genki = smile_copy_and_genki
    pp = ModelMeta.load(folder).preprocess_config
    plain, deblocked = {}, {}
    run_suite(folder, str(genki), None, None, split="val", conditions=("jpeg10",), readings=plain)
    run_suite(folder, str(genki), None, None, split="val", conditions=("jpeg10",), readings=deblocked,
              preprocess=replace(pp, deblock=1.0))
    assert set(plain) == set(deblocked) == {"genki4k-val", "genki4k-val/jpeg10"}
    moved = lambda name: np.abs(plain[name][1] - deblocked[name][1]).max(axis=1) > 1e-4   # noqa: E731
    assert moved("genki4k-val/jpeg10").mean() > 0.9      # every compressed photo is deblocked
    assert moved("genki4k-val").mean() < 0.2             # photos as GENKI-4K stores them mostly are not


@pytest.mark.slow
def test_the_command_chooses_on_real_validation_faces_and_writes_its_choice(smile_copy_and_genki, tmp_path,
                                                                            monkeypatch, capsys):
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path / "cache"))
    folder, genki = smile_copy_and_genki
    text = (folder / "metadata.json").read_text()
    out = tmp_path / "deblock.json"
    args = ["--model", str(folder), "--genki", str(genki), "--fer", str(tmp_path / "none"),
            "--media", str(tmp_path / "none"), "--sigmas", "0.7", "1.0"]
    assert db.main(args + ["--json", str(out)]) == 0
    assert (folder / "metadata.json").read_text() == text   # no --write: the model is untouched
    d = json.loads(out.read_text())
    rows = [db.DeblockRow(**r) for r in d["rows"]]
    assert [r.sigma for r in rows] == [0.0, 0.7, 1.0]
    assert {name.split("/")[0] for r in rows for name in r.balanced} == {"genki4k-val"}
    assert db.choose(rows).sigma == d["chosen"]["sigma"]   # the JSON's choice is the rule's
    assert "chosen:" in capsys.readouterr().out

    assert db.main(args + ["--write"]) == 0
    meta = ModelMeta.load(folder)
    choice = meta.extra["deblock_choice"]
    assert meta.preprocess_config.deblock == choice["sigma"] == d["chosen"]["sigma"]
    assert choice["command"].startswith("python -m bench.deblock --model ") and "--write" in choice["command"]
    assert "0.7, 1 px" in choice["rule"]


def test_the_command_refuses_bad_settings_and_changes_nothing(smile_copy_and_genki, tmp_path, capsys):
    folder, genki = smile_copy_and_genki
    text = (folder / "metadata.json").read_text()
    assert db.main(["--model", str(folder), "--genki", str(genki), "--sigmas", "7", "--write"]) == 2
    assert "sigma must be in" in capsys.readouterr().err
    assert db.main(["--model", str(tmp_path / "nothing"), "--genki", str(genki), "--write"]) == 2
    assert (folder / "metadata.json").read_text() == text


@pytest.mark.parametrize("task", ["smile", "expression"])
def test_a_bundled_card_says_how_its_model_deblocks(task):
    meta = ModelMeta.load(REPO / "models" / task)
    sigma = meta.preprocess_config.deblock
    chosen = (meta.extra.get("deblock_choice") or {}).get("sigma") == sigma
    trained = sigma in trained_deblocks(meta.extra)
    assert sigma > 0 and (chosen or trained)   # both shipped models deblock: by the rule, or as they were trained
    card = (REPO / "models" / task / "README.md").read_text()
    assert f"blurred (sigma {sigma:g} px" in card
    assert ("chosen on the validation suite by `python -m bench.deblock`" in card) == chosen
    assert ("as its compressed training faces were with `--deblock`" in card) == trained


def test_training_measures_and_blurs_compressed_faces_as_serving_does(photo_and_box):
    """The augmenter's block measure and blur (TensorFlow) agree with core.preprocess's on a real face crop,
    and its JPEG step blurs only the faces compressed hard enough to pass the gate."""
    import tensorflow as tf

    from training.augment import blockiness, gaussian_blur, make_augmenter
    from training.config import Augment

    gray, box = photo_and_box
    crop = crop_faces(gray, [box], PreprocessConfig())[0][:, :, 0]
    coded = {q: cv2.imdecode(cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_GRAYSCALE)
             for q in (10, 95)}
    for face in (crop, coded[10], coded[95]):
        ours = float(blockiness(tf.constant(face[:, :, None], tf.float32)))
        assert ours == pytest.approx(jpeg_blockiness(face), abs=1e-4)
    assert float(blockiness(tf.constant(coded[10][:, :, None], tf.float32))) >= DEBLOCK_GATE
    for sigma in (0.7, 1.0):
        ours = gaussian_blur(tf.constant(coded[10][:, :, None], tf.float32), sigma).numpy()[:, :, 0]
        assert np.abs(ours - cv2.GaussianBlur(coded[10], (0, 0), sigma)).max() <= 1.0   # OpenCV rounds to 8 bits

    # every face compressed (quality 10-50), no other change: with deblocking the hardest-hit faces come out blurred
    batch = tf.constant(np.repeat(crop[None, :, :, None], 32, axis=0), tf.float32)
    plain = Augment(flip=False, shift=0, rotate=0, zoom=0, brightness_contrast=0, blur=0, jpeg=1.0)
    out = {d: make_augmenter(replace(plain, deblock=d), crop.shape[0], seed=3)(batch, None)[0].numpy()
           for d in (0.0, 1.0)}
    changed = np.abs(out[1.0] - out[0.0]).mean(axis=(1, 2, 3)) > 0.5
    blocky = np.array([jpeg_blockiness(face[:, :, 0].astype(np.uint8)) >= DEBLOCK_GATE for face in out[0.0]])
    assert blocky.any() and not blocky.all(), "quality 10-50 gives faces on both sides of the gate"
    np.testing.assert_array_equal(changed, blocky)
