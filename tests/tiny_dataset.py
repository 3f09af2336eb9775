"""Small datasets written into a test's temporary folder: real GENKI-4K / FER-2013 images when ../shared
is there (copied to tmp, never into the repo), drawn faces otherwise."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GENKI = SHARED / "datasets" / "genki4k"
FER = SHARED / "datasets" / "fer2013"
GENKI_SMILES = 2162           # GENKI-4K's labels are sorted: files 1..2162 smile, the rest not


def drawn_face(smile: bool, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A grey cartoon face: eyes, and a mouth that curves up (smile) or is straight."""
    img = np.full((size, size, 3), int(rng.integers(90, 160)), np.uint8)
    c, r = size // 2, int(size * rng.uniform(0.3, 0.4))
    cv2.circle(img, (c, c), r, (210, 190, 170), -1)
    for dx in (-r // 2, r // 2):
        cv2.circle(img, (c + dx, c - r // 3), max(2, r // 8), (40, 40, 40), -1)
    if smile:
        cv2.ellipse(img, (c, c + r // 4), (r // 2, r // 3), 0, 20, 160, (40, 20, 20), 3)
    else:
        cv2.line(img, (c - r // 3, c + r // 2), (c + r // 3, c + r // 2), (40, 20, 20), 3)
    return img


def make_class_folders(root: Path, per_class: int = 30, size: int = 96, seed: int = 0) -> Path:
    """`root/smile/*.png` and `root/non_smile/*.png`: GENKI-4K photos shrunk to `size` (so they are
    taken as face crops), or drawn faces without ../shared."""
    rng = np.random.default_rng(seed)
    for cls, first in (("smile", 1), ("non_smile", GENKI_SMILES + 1)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            if GENKI.is_dir():
                img = cv2.imread(str(GENKI / "files" / f"file{first + k:04d}.jpg"))
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            else:
                img = drawn_face(cls == "smile", rng, size)
            cv2.imwrite(str(root / cls / f"{cls}{k:03d}.png"), img)
    return root


def make_mini_genki(root: Path, per_class: int = 20) -> Path:
    """A GENKI-4K-layout copy of `per_class` smiling and non-smiling photos (needs ../shared)."""
    lines = (GENKI / "labels.txt").read_text().split("\n")
    picks = list(range(1, per_class + 1)) + list(range(GENKI_SMILES + 1, GENKI_SMILES + 1 + per_class))
    (root / "files").mkdir(parents=True, exist_ok=True)
    out = []
    for new, old in enumerate(picks, start=1):
        (root / "files" / f"file{new:04d}.jpg").write_bytes((GENKI / "files" / f"file{old:04d}.jpg").read_bytes())
        out.append(lines[old - 1])
    (root / "labels.txt").write_text("\n".join(out))
    return root


def make_mini_fer(root: Path, per_class: int = 4) -> Path:
    """FER-2013's folder layout with `per_class` images per class in train and test (needs ../shared)."""
    for split in ("train", "test"):
        for folder in sorted((FER / split).iterdir()):
            files = sorted(folder.iterdir())
            if split == "test":  # both official test splits
                files = [f for f in files if f.name.startswith("PublicTest")][:per_class // 2] + \
                        [f for f in files if f.name.startswith("PrivateTest")][:per_class - per_class // 2]
            (root / split / folder.name).mkdir(parents=True, exist_ok=True)
            for f in files[:per_class]:
                (root / split / folder.name / f.name).write_bytes(f.read_bytes())
    return root
