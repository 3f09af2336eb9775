"""Dataset loaders: GENKI-4K, FER-2013 (folders or the original CSV) and any class-folder tree.

A loader lists samples (a file or a pixel array, a label, a duplicate-group key, an official
split if the dataset has one); `training.faces` turns samples into preprocessed face crops.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.tasks import Task

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
FER_CSV_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_USAGE = {"Training": "train", "PublicTest": "public_test", "PrivateTest": "private_test"}
# FER-2013 classes that are honest smile labels: happy faces smile, neutral faces do not.
FER_FOR_SMILE = {"happy": "smile", "neutral": "non_smile"}
# Its other expressions do not smile either: a fraction of them can join as harder no-smile faces
# (`fer_negatives`), picked by content hash so the choice never depends on file order.
FER_OTHER_NON_SMILE = ("angry", "disgust", "fear", "sad", "surprise")


class DatasetError(ValueError):
    """A dataset that cannot be read; the message says what is wrong and where."""


@dataclass
class Sample:
    source: str | np.ndarray          # image path, or a uint8 pixel array (CSV datasets)
    label: int                        # index into the task's class names
    group: str                        # equal for exact duplicates: they stay on one side of a split
    split: str | None = None          # official split: train / public_test / private_test / test
    cropped: bool = False             # already a face crop: no detection needed
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.source).name if isinstance(self.source, str) else self.meta.get("name", "")


@dataclass
class Dataset:
    name: str                         # genki4k / fer2013 / folders
    root: str
    task: Task
    samples: list[Sample]
    skipped: dict[str, int] = field(default_factory=dict)   # classes present but not in the task

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.labels, minlength=self.task.n_classes)
        return {n: int(k) for n, k in zip(self.task.class_names, c)}


def fer_expression(sample: Sample) -> str:
    """The FER-2013 expression a sample was filed under (its class folder, or its CSV emotion)."""
    return sample.meta.get("expression") or Path(sample.source).parent.name.lower()


def file_digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def detect_layout(root: str | Path) -> str:
    """Which loader a path needs: genki4k, fer_csv, split_folders or folders."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such dataset folder or file")
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "fer_csv"
        raise DatasetError(f"{root}: a dataset is a folder or a fer2013.csv file")
    if (root / "labels.txt").is_file() and (root / "files").is_dir():
        return "genki4k"
    if (root / "fer2013.csv").is_file():
        return "fer_csv"
    if (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()):
        return "split_folders"
    return "folders"


def is_fer2013(root: str | Path) -> bool:
    """Whether `root` holds FER-2013 (its CSV, or its train/test class folders)."""
    try:
        layout = detect_layout(root)
    except DatasetError:
        return False
    return layout == "fer_csv" or (layout == "split_folders" and _is_fer(Path(root)))


def load_dataset(root: str | Path, task: Task, fer_negatives: float = 0.0) -> Dataset:
    """Load any supported dataset layout for `task`. For smile, `fer_negatives` is the fraction of
    FER-2013's angry, disgust, fear, sad and surprise faces taken as no-smile faces."""
    layout = detect_layout(root)
    if layout == "genki4k":
        return load_genki4k(root, task)
    if layout == "fer_csv":
        root = Path(root)
        return load_fer_csv(root if root.is_file() else root / "fer2013.csv", task, fer_negatives)
    if layout == "split_folders":
        return load_split_folders(root, task, fer_negatives)
    return load_class_folders(root, task)


def load_genki4k(root: str | Path, task: Task) -> Dataset:
    """GENKI-4K in its official layout: labels.txt (smile yaw pitch roll) and files/fileNNNN.jpg."""
    root = Path(root)
    if task.name != "smile":
        raise DatasetError(f"GENKI-4K has smile labels only; it cannot train task '{task.name}'")
    lines = (root / "labels.txt").read_text().split("\n")
    samples = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise DatasetError(f"{root / 'labels.txt'} line {i}: expected 'smile yaw pitch roll', got {line!r}")
        try:
            smile, yaw, pitch, roll = int(float(parts[0])), *map(float, parts[1:])
        except ValueError:
            raise DatasetError(f"{root / 'labels.txt'} line {i}: not numbers: {line!r}") from None
        path = root / "files" / f"file{i:04d}.jpg"
        if not path.is_file():
            raise DatasetError(f"{path}: listed in labels.txt line {i} but missing")
        samples.append(Sample(str(path), task.class_index("smile" if smile else "non_smile"),
                              file_digest(path), meta={"yaw": yaw, "pitch": pitch, "roll": roll}))
    if not samples:
        raise DatasetError(f"{root / 'labels.txt'}: no labels")
    return Dataset("genki4k", str(root), task, samples)


def _class_for(folder: str, task: Task, fer_source: bool, group: str = "",
               fer_negatives: float = 0.0) -> int | None:
    name = folder.lower()
    if task.name == "smile" and fer_source and name in FER_FOR_SMILE:
        name = FER_FOR_SMILE[name]
    elif task.name == "smile" and fer_source and name in FER_OTHER_NON_SMILE and _picked(group, fer_negatives):
        name = "non_smile"
    try:
        return task.class_index(name)
    except KeyError:
        return None


def _picked(group: str, fraction: float) -> bool:
    """Deterministically keep about `fraction` of samples, by their (hex digest) group key."""
    return fraction > 0 and int(group[:8], 16) < fraction * 16 ** 8


def class_images(folder: Path) -> list[Path]:
    """The images of one class folder, its subfolders' too (SMILEsmileD files its faces under
    positives/positives7/); hidden files and folders left out."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _scan_class_folders(root: Path, task: Task, split: str | None, fer_source: bool,
                        skipped: dict[str, int], fer_negatives: float = 0.0) -> list[Sample]:
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = class_images(folder)
        folder_label = _class_for(folder.name, task, fer_source)
        per_file = folder_label is None and fer_negatives > 0 and fer_source   # some of these faces may join
        if folder_label is None and not per_file:
            skipped[folder.name] = skipped.get(folder.name, 0) + len(files)
            continue
        for f in files:
            digest = file_digest(f)
            label = _class_for(folder.name, task, True, digest, fer_negatives) if per_file else folder_label
            if label is None:
                skipped[folder.name] = skipped.get(folder.name, 0) + 1
                continue
            official = split
            if split == "test" and fer_source:  # FER test files are named by their official split
                official = ("private_test" if f.name.startswith("PrivateTest")
                            else "public_test" if f.name.startswith("PublicTest") else "test")
            samples.append(Sample(str(f), label, digest, official))
    return samples


def _is_fer(root: Path) -> bool:
    names = {p.name.lower() for p in (root / "train").iterdir() if p.is_dir()} if (root / "train").is_dir() else set()
    return {"happy", "neutral", "disgust"} <= names


def load_split_folders(root: str | Path, task: Task, fer_negatives: float = 0.0) -> Dataset:
    """`<root>/train|test/<class>/*` (FER-2013's image-folder layout); official splits kept."""
    root = Path(root)
    fer = _is_fer(root)
    skipped: dict[str, int] = {}
    samples = []
    for split in ("train", "val", "test"):
        if (root / split).is_dir():
            samples += _scan_class_folders(root / split, task, split, fer, skipped, fer_negatives)
    if not samples:
        raise DatasetError(f"{root}: no images in class folders named like {', '.join(task.class_names)}")
    for s in samples:
        s.cropped = fer
    return Dataset("fer2013" if fer else "split_folders", str(root), task, samples, skipped)


def load_class_folders(root: str | Path, task: Task) -> Dataset:
    """Any `<root>/<class name>/*` image folder; folder names as the task defines them."""
    root = Path(root)
    skipped: dict[str, int] = {}
    samples = _scan_class_folders(root, task, None, False, skipped)
    if not samples:
        raise DatasetError(f"{root}: no images in class folders named like {', '.join(task.class_names)}"
                           + (f" (found folders: {', '.join(sorted(skipped))})" if skipped else ""))
    return Dataset("folders", str(root), task, samples, skipped)


def load_fer_csv(path: str | Path, task: Task, fer_negatives: float = 0.0) -> Dataset:
    """The original fer2013.csv: emotion (0..6), 2304 space-separated pixels, Usage."""
    path = Path(path)
    samples, skipped = [], {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["emotion", "pixels", "Usage"]:
            raise DatasetError(f"{path}: expected the header 'emotion,pixels,Usage', got {header}")
        for row_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                emotion, pixels, usage = row[0], row[1], row[2]
                cls = FER_CSV_CLASSES[int(emotion)]
                values = np.array(pixels.split(), dtype=np.int64)
                if values.size != 48 * 48 or values.min() < 0 or values.max() > 255:
                    raise ValueError(f"{values.size} pixel values (want 2304 in 0..255)")
                split = FER_USAGE[usage.strip()]
            except (IndexError, ValueError, KeyError) as exc:
                raise DatasetError(f"{path} row {row_no}: malformed ({type(exc).__name__}: {exc})") from None
            img = values.astype(np.uint8).reshape(48, 48)
            group = hashlib.md5(img.tobytes()).hexdigest()
            label = _class_for(cls, task, True, group, fer_negatives)
            if label is None:
                skipped[cls] = skipped.get(cls, 0) + 1
                continue
            samples.append(Sample(img, label, group, split, cropped=True,
                                  meta={"name": f"row{row_no}", "expression": cls}))
    if not samples:
        raise DatasetError(f"{path}: no rows for task '{task.name}'")
    return Dataset("fer2013", str(path), task, samples, skipped)
