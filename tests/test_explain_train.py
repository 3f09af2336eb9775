"""Explanations follow what a model learnt: two tiny models trained for real (training.train) on drawn faces
whose label shows strongly at the mouth and weakly at the eyes; the one trained with the mouth blacked out
can only learn the eyes, and its heat maps move off the mouth."""
from __future__ import annotations

import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.explain import Explainer, region_share
from core.model import Classifier
from training.train import main

pytestmark = pytest.mark.slow
SIZE = 32
QUICK = ["--task", "smile", "--width", "8", "--batch-size", "8", "--precision", "float32", "--warmup-epochs", "0",
         "--input-size", str(SIZE), "--epochs", "8", "--seed", "1", "--skip-test",
         # no random augmentation: its stateful generators run in parallel tf.data maps, so their draws (and
         # then whether a model this tiny learns in 8 epochs) varied from run to run; shuffling stays seeded
         "--no-flip", "--shift", "0", "--rotate", "0", "--zoom", "0", "--brightness-contrast", "0", "--blur", "0"]


def drawn(smile: bool, eyes_agree: bool, rng: np.random.Generator, black_mouth: bool) -> np.ndarray:
    """A grey face: a bright (smile) or dark (no smile) mouth bar in the lower third, and faint eye dots
    that are bright with the smile only when `eyes_agree` (3 faces in 4)."""
    img = rng.normal(128, 12, (SIZE, SIZE)).clip(0, 255)
    bright_eyes = smile == eyes_agree
    for x in (9, 23):
        cv2.circle(img, (x, 8), 3, 150 if bright_eyes else 106, -1)
    mouth_y = int(rng.integers(24, 28))
    cv2.rectangle(img, (9, mouth_y), (23, mouth_y + 3), 250 if smile else 10, -1)
    if black_mouth:
        img[2 * SIZE // 3:] = 0
    return img.astype(np.uint8)


def faces(root: Path, black_mouth: bool, per_class: int = 200) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("smile", "non_smile"):
        (root / cls).mkdir(parents=True)
        for k in range(per_class):
            cv2.imwrite(str(root / cls / f"{k:03d}.png"), drawn(cls == "smile", k % 4 != 0, rng, black_mouth))
    return root


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRIN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def trained(tmp_path: Path, black_mouth: bool) -> Classifier:
    name = "black-mouth" if black_mouth else "plain"
    data = faces(tmp_path / f"data-{name}", black_mouth)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert main([*QUICK, "--data", str(data), "--out", str(tmp_path / name)]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    return Classifier(tmp_path / name)


def test_blacking_out_the_mouth_moves_the_evidence_off_it(tmp_path):
    plain, blind = trained(tmp_path, False), trained(tmp_path, True)
    rng = np.random.default_rng(7)
    truth = np.arange(40) % 2 == 0
    shown = np.stack([drawn(s, True, rng, False) for s in truth])[:, :, :, None]   # both see whole faces
    assert (plain.predict(shown).argmax(1) == truth).mean() >= 0.9, "the plain model reads the mouth"
    report = {}
    for method in ("grad-cam", "occlusion"):
        for name, clf in (("plain", plain), ("blind", blind)):
            found = Explainer(clf, warm_up=False).explain(shown, truth.astype(int), method)
            shares = [region_share(e.heat) for e in found]
            report[method, name] = float(np.mean([s for s in shares if s is not None]))
    print(report)
    # occlusion sees the crop at its own resolution; Grad-CAM's last block is 2x2 at this input size, so
    # its maps move less (and by how much varies with the machine's float rounding over 8 epochs)
    for method, margin in (("grad-cam", 0.05), ("occlusion", 0.15)):
        assert report[method, "plain"] - report[method, "blind"] > margin, report
