"""Every dataset loader on small datasets written here: GENKI-4K, fer2013.csv, FER folders, class folders."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.tasks import get_task
from tiny_dataset import FER, GENKI, drawn_face, make_mini_genki
from training.datasets import (FER_CSV_CLASSES, DatasetError, detect_layout, fer_expression, load_dataset,
                               load_fer_csv)

SMILE, EXPRESSION = get_task("smile"), get_task("expression")


def genki_layout(root: Path, per_class: int = 6) -> Path:
    """GENKI-4K's layout: real photos when ../shared is there, drawn faces otherwise; labels.txt has
    no final newline, like the official release."""
    if GENKI.is_dir():
        return make_mini_genki(root, per_class)
    rng = np.random.default_rng(0)
    (root / "files").mkdir(parents=True)
    lines = []
    for i in range(2 * per_class):
        smile = i < per_class
        cv2.imwrite(str(root / "files" / f"file{i + 1:04d}.jpg"), drawn_face(smile, rng, 180))
        lines.append(f"{int(smile)} {rng.uniform(-0.3, 0.3):.4f} 0.0100 -0.0200")
    (root / "labels.txt").write_text("\n".join(lines))
    return root


def fer_pixels(n: int) -> list[np.ndarray]:
    """Real 48x48 FER-2013 faces when ../shared is there, drawn faces otherwise."""
    if FER.is_dir():
        files = sorted((FER / "test" / "happy").iterdir())[:n]
        return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    rng = np.random.default_rng(1)
    return [cv2.cvtColor(drawn_face(k % 2 == 0, rng, 48), cv2.COLOR_RGB2GRAY) for k in range(n)]


def write_fer_csv(path: Path, rows: list[tuple[int, np.ndarray | str, str]]) -> Path:
    lines = ["emotion,pixels,Usage"]
    for emotion, pixels, usage in rows:
        text = pixels if isinstance(pixels, str) else " ".join(map(str, pixels.reshape(-1)))
        lines.append(f"{emotion},{text},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_images(folder: Path, names: list[str], size: int = 48, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        cv2.imwrite(str(folder / name), drawn_face(bool(rng.integers(0, 2)), rng, size))


# GENKI-4K

def test_genki4k_layout(tmp_path):
    root = genki_layout(tmp_path / "genki", per_class=6)
    assert not (root / "labels.txt").read_text().endswith("\n")
    assert detect_layout(root) == "genki4k"
    ds = load_dataset(root, SMILE)
    assert ds.name == "genki4k" and len(ds.samples) == 12
    assert list(ds.labels) == [1] * 6 + [0] * 6          # 1 = smile in the task's class order
    assert ds.counts() == {"non_smile": 6, "smile": 6}
    s = ds.samples[0]
    assert Path(s.source).name == "file0001.jpg" and s.split is None and not s.cropped
    assert set(s.meta) == {"yaw", "pitch", "roll"}
    assert len({x.group for x in ds.samples}) == 12       # content digests, distinct photos


def test_genki4k_with_a_final_newline_and_duplicate_files(tmp_path):
    root = genki_layout(tmp_path / "genki", per_class=3)
    (root / "labels.txt").write_text((root / "labels.txt").read_text() + "\n")
    (root / "files" / "file0002.jpg").write_bytes((root / "files" / "file0001.jpg").read_bytes())
    ds = load_dataset(root, SMILE)
    assert len(ds.samples) == 6
    assert ds.samples[0].group == ds.samples[1].group != ds.samples[2].group


def test_genki4k_errors_name_the_line_or_file(tmp_path):
    root = genki_layout(tmp_path / "genki", per_class=3)
    lines = (root / "labels.txt").read_text().split("\n")
    (root / "labels.txt").write_text("\n".join(lines[:2] + ["1 0.1 oops 0.2"] + lines[3:]))
    with pytest.raises(DatasetError, match="line 3: not numbers"):
        load_dataset(root, SMILE)
    (root / "labels.txt").write_text("\n".join(lines + ["1 0 0 0"]))
    with pytest.raises(DatasetError, match="file0007.jpg: listed in labels.txt line 7 but missing"):
        load_dataset(root, SMILE)
    (root / "labels.txt").write_text("\n".join(lines))
    with pytest.raises(DatasetError, match="smile labels only"):
        load_dataset(root, EXPRESSION)


# fer2013.csv

def test_fer_csv(tmp_path):
    px = fer_pixels(7)
    rows = [(k, px[k], usage) for k, usage in
            zip(range(7), ["Training", "Training", "Training", "PublicTest", "PrivateTest", "Training", "Training"])]
    path = write_fer_csv(tmp_path / "fer2013.csv", rows)
    assert detect_layout(path) == "fer_csv" and detect_layout(tmp_path) == "fer_csv"
    ds = load_dataset(tmp_path, EXPRESSION)
    assert ds.name == "fer2013" and len(ds.samples) == 7
    # CSV order angry, disgust, fear, happy, sad, surprise, neutral -> the task's order
    assert [EXPRESSION.class_names[i] for i in ds.labels] == list(FER_CSV_CLASSES)
    assert [s.split for s in ds.samples][3:5] == ["public_test", "private_test"]
    s = ds.samples[0]
    assert s.cropped and s.source.shape == (48, 48) and s.source.dtype == np.uint8
    np.testing.assert_array_equal(s.source, px[0])
    assert s.meta["name"] == "row2"


def test_fer_csv_for_the_smile_task_keeps_happy_and_neutral(tmp_path):
    px = fer_pixels(7)
    path = write_fer_csv(tmp_path / "fer2013.csv", [(k, px[k], "Training") for k in range(7)])
    ds = load_fer_csv(path, SMILE)
    assert [SMILE.class_names[i] for i in ds.labels] == ["smile", "non_smile"]
    assert ds.skipped == {"angry": 1, "disgust": 1, "fear": 1, "sad": 1, "surprise": 1}


def test_fer_csv_other_expressions_can_join_smile_as_no_smile_faces(tmp_path):
    px = fer_pixels(7)
    path = write_fer_csv(tmp_path / "fer2013.csv", [(k, px[k], "Training") for k in range(7)])
    ds = load_fer_csv(path, SMILE, fer_negatives=1.0)
    assert ds.counts() == {"non_smile": 6, "smile": 1} and not ds.skipped
    assert [fer_expression(s) for s in ds.samples] == list(FER_CSV_CLASSES)   # what each face was filed as


@pytest.mark.parametrize("bad, reason", [
    ("0 1 2", "3 pixel values"),
    (" ".join(["300"] * 2304), "pixel values"),
    ("a b c", "ValueError"),
])
def test_fer_csv_malformed_row_names_the_row(tmp_path, bad, reason):
    px = fer_pixels(3)
    rows = [(3, px[0], "Training"), (4, px[1], "Training"), (0, bad, "Training"), (6, px[2], "Training")]
    path = write_fer_csv(tmp_path / "fer2013.csv", rows)
    with pytest.raises(DatasetError, match="row 4: malformed") as info:
        load_dataset(path, EXPRESSION)
    assert reason in str(info.value)


def test_fer_csv_bad_label_usage_or_header(tmp_path):
    px = fer_pixels(1)[0]
    with pytest.raises(DatasetError, match="row 2: malformed"):
        load_dataset(write_fer_csv(tmp_path / "a.csv", [(9, px, "Training")]), EXPRESSION)
    with pytest.raises(DatasetError, match="row 2: malformed"):
        load_dataset(write_fer_csv(tmp_path / "b.csv", [(3, px, "Holdout")]), EXPRESSION)
    (tmp_path / "c.csv").write_text("label,data\n1,2\n")
    with pytest.raises(DatasetError, match="expected the header"):
        load_dataset(tmp_path / "c.csv", EXPRESSION)


# FER-2013 image folders

def fer_folders(root: Path) -> Path:
    for cls in EXPRESSION.class_names:
        write_images(root / "train" / cls, [f"Training_{cls}{i}.jpg" for i in range(3)])
        write_images(root / "test" / cls, [f"PublicTest_{cls}{i}.jpg" for i in range(2)] +
                     [f"PrivateTest_{cls}{i}.jpg" for i in range(2)])
    return root


def test_fer_folders_keep_the_official_splits(tmp_path):
    root = fer_folders(tmp_path / "fer")
    assert detect_layout(root) == "split_folders"
    ds = load_dataset(root, EXPRESSION)
    assert ds.name == "fer2013" and len(ds.samples) == 7 * 7
    assert all(s.cropped for s in ds.samples)
    for s in ds.samples:
        name = Path(s.source).name
        want = ("private_test" if name.startswith("PrivateTest") else
                "public_test" if name.startswith("PublicTest") else "train")
        assert s.split == want
        assert EXPRESSION.class_names[s.label] == Path(s.source).parent.name
    assert ds.counts() == {c: 7 for c in EXPRESSION.class_names}


def test_fer_folders_for_smile_use_happy_and_neutral_only(tmp_path):
    ds = load_dataset(fer_folders(tmp_path / "fer"), SMILE)
    assert ds.counts() == {"non_smile": 7, "smile": 7}
    assert set(ds.skipped) == {"angry", "disgust", "fear", "sad", "surprise"}


def test_fer_folders_other_expressions_can_join_smile_as_no_smile_faces(tmp_path):
    """--fer-negatives: a fraction of the angry/disgust/fear/sad/surprise faces become no-smile faces,
    picked by content, the same every time; happy and neutral are unaffected."""
    root = fer_folders(tmp_path / "fer")
    base = load_dataset(root, SMILE)
    everything = load_dataset(root, SMILE, fer_negatives=1.0)
    assert everything.counts() == {"non_smile": 7 * 6, "smile": 7} and not everything.skipped
    assert {fer_expression(s) for s in everything.samples} == set(EXPRESSION.class_names)
    some = load_dataset(root, SMILE, fer_negatives=0.5)
    assert [s.source for s in some.samples] == [s.source for s in load_dataset(root, SMILE, 0.5).samples]
    added = len(some.samples) - len(base.samples)
    assert 0 < added < 5 * 7 and sum(some.skipped.values()) == 5 * 7 - added
    assert some.counts() == {"non_smile": 7 + added, "smile": 7}
    assert {Path(s.source).parent.name for s in some.samples} - {"happy", "neutral"} <= set(base.skipped)
    # the expression task never relabels its classes
    assert load_dataset(root, EXPRESSION, fer_negatives=1.0).counts() == {c: 7 for c in EXPRESSION.class_names}


# Any class folders

def test_class_folders_with_aliases(tmp_path):
    write_images(tmp_path / "smiling", ["a.png", "b.jpg"], size=64)
    write_images(tmp_path / "Non-Smile", ["c.png", "d.bmp", "e.webp"], size=64)
    (tmp_path / "Non-Smile" / "notes.txt").write_text("not an image")
    ds = load_dataset(tmp_path, SMILE)
    assert ds.name == "folders" and ds.counts() == {"non_smile": 3, "smile": 2}
    assert all(s.split is None and not s.cropped for s in ds.samples)


def test_other_collections_folder_names_for_smiles(tmp_path):
    """SMILEsmileD files its faces under positives/positives7/ and negatives/negatives7/; a studio set
    under happy/ and neutral/: both load for the smile task as they are (hidden folders left out)."""
    smiles = tmp_path / "SMILEs"
    write_images(smiles / "positives" / "positives7", ["1.jpg", "2.jpg"], size=64)
    write_images(smiles / "negatives" / "negatives7", ["3.jpg", "4.jpg", "5.jpg"], size=64)
    write_images(smiles / "negatives" / ".ipynb_checkpoints", ["6.jpg"], size=64)
    assert load_dataset(smiles, SMILE).counts() == {"non_smile": 3, "smile": 2}
    studio = tmp_path / "studio"
    write_images(studio / "happy", ["1.png", "2.png"], size=64)
    write_images(studio / "neutral", ["3.png"], size=64)
    write_images(studio / "angry", ["4.png"], size=64)
    ds = load_dataset(studio, SMILE)
    assert ds.counts() == {"non_smile": 1, "smile": 2} and ds.skipped == {"angry": 1}
    assert load_dataset(studio, EXPRESSION).counts()["neutral"] == 1      # the expression task reads them as named


def test_expression_folders_with_aliases_and_unknown_classes(tmp_path):
    for folder in ("happiness", "surprised", "Sad", "contempt", "cats"):
        write_images(tmp_path / folder, ["1.png", "2.png"])
    ds = load_dataset(tmp_path, EXPRESSION)
    assert ds.counts()["happy"] == 2 and ds.counts()["surprise"] == 2 and ds.counts()["sad"] == 2
    assert ds.skipped == {"contempt": 2, "cats": 2}


def test_only_unknown_class_folders_is_an_error_listing_them(tmp_path):
    write_images(tmp_path / "cats", ["1.png"])
    write_images(tmp_path / "dogs", ["1.png"])
    with pytest.raises(DatasetError, match=r"no images in class folders.*found folders: cats, dogs"):
        load_dataset(tmp_path, SMILE)


def test_missing_dataset_path(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder or file"):
        load_dataset(tmp_path / "nowhere", SMILE)
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match="a dataset is a folder or a fer2013.csv file"):
        load_dataset(tmp_path / "data.zip", SMILE)
