"""The face detector on real photos: recall on GENKI-4K, boxes in original coordinates, no false faces."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.detect import DetectorConfig, FaceDetector
from core.imageio import load_image
from tiny_dataset import GENKI, SHARED

EXPRESSIONS = SHARED / "media" / "expressions"
needs_genki = pytest.mark.skipif(not GENKI.is_dir(), reason=f"{GENKI} is absent (shared datasets live beside the repo)")
needs_media = pytest.mark.skipif(not EXPRESSIONS.is_dir(), reason=f"{EXPRESSIONS} is absent (shared media live beside the repo)")


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(DetectorConfig())


@needs_genki
@pytest.mark.slow
def test_finds_a_face_in_at_least_95_percent_of_genki_photos(detector):
    """A fixed, evenly spaced 1000 of the 4000 photos (smiles and non-smiles alike): one pass (live
    video) and with the finer second pass for photos (uploads, datasets)."""
    files = sorted((GENKI / "files").glob("file*.jpg"))
    assert len(files) == 4000
    picks = files[::4]
    found = found_thorough = 0
    for f in picks:
        img = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        boxes = detector.detect(img)
        if not boxes:
            boxes = detector.detect(img, thorough=True)
        else:
            found += 1
        found_thorough += bool(boxes)
        h, w = img.shape[:2]
        for x, y, bw, bh in boxes:
            assert 0 <= x and 0 <= y and x + bw <= w + 1 and y + bh <= h + 1
    assert found / len(picks) >= 0.95, f"one pass found faces in {found} of {len(picks)} photos"
    assert found_thorough / len(picks) >= 0.99, f"the deeper search found faces in {found_thorough} of {len(picks)}"


@needs_media
@pytest.mark.parametrize("name", ["happy", "neutral", "surprised"])
def test_one_face_per_expression_photo(detector, name):
    img = load_image(EXPRESSIONS / f"{name}.jpg")
    boxes = detector.detect(img)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert w == h and w > min(img.shape[:2]) * 0.25      # a real face, not a speck


@needs_media
def test_boxes_are_in_original_coordinates(detector):
    img = load_image(EXPRESSIONS / "happy.jpg")            # 500x282: detected on a 320-wide copy
    big = cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    (x, y, w, h), = detector.detect(img)
    (bx, by, bw, bh), = detector.detect(big)
    for small, large in ((x, bx), (y, by), (w, bw), (h, bh)):
        assert abs(large - 2 * small) <= max(4, 0.05 * w), ((x, y, w, h), (bx, by, bw, bh))


@needs_genki
def test_small_images_are_detected_at_full_resolution(detector):
    """A GENKI photo (under max_side) and the same photo 3x larger (downscaled) agree."""
    img = cv2.cvtColor(cv2.imread(str(GENKI / "files" / "file0010.jpg")), cv2.COLOR_BGR2RGB)
    assert max(img.shape[:2]) <= detector.config.max_side
    (x, y, w, h), = detector.detect(img)[:1]
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    (bx, by, bw, bh), = detector.detect(big)[:1]
    assert abs(bx / 3 - x) <= 0.1 * w and abs(by / 3 - y) <= 0.1 * h and abs(bw / 3 - w) <= 0.15 * w


@needs_media
def test_largest_face_first_and_gray_input(detector):
    img = load_image(EXPRESSIONS / "sad.jpg")
    canvas = np.zeros((600, 900, 3), np.uint8)
    canvas[:img.shape[0], :img.shape[1]] = img
    small = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    canvas[300:300 + small.shape[0], 500:500 + small.shape[1]] = small
    boxes = detector.detect(canvas)
    assert len(boxes) == 2
    assert boxes[0][2] > boxes[1][2] and boxes[1][0] >= 500
    assert detector.detect(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)) == boxes


@needs_media
@pytest.mark.parametrize("name, angle", [("neutral", -30), ("sad", 30), ("angry", 30)])
def test_tilted_heads_are_found_by_the_deeper_search_for_photos(detector, name, angle):
    """A real face turned by 25-30 degrees: the one-pass (live) search misses it; the photo search
    finds it, with the box centred on the face and about its size."""
    img = load_image(EXPRESSIONS / f"{name}.jpg")
    (x, y, w, h), = detector.detect(img)
    rot = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), angle, 1.0)
    turned = cv2.warpAffine(img, rot, img.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    cx, cy = rot @ np.array([x + w / 2, y + h / 2, 1.0])
    assert detector.detect(turned) == []
    assert FaceDetector(DetectorConfig(fallback_angles=())).detect(turned, thorough=True) == []
    (bx, by, bw, bh), *_ = detector.detect(turned, thorough=True)
    assert abs(bx + bw / 2 - cx) < 0.15 * w and abs(by + bh / 2 - cy) < 0.15 * w and 0.8 < bw / w < 1.25


def test_no_face_in_blank_or_noise_images(detector):
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((480, 640, 3), 255, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(np.zeros((5, 5, 3), np.uint8)) == []     # tiny input: no crash
    for image in (noise, np.zeros((480, 640, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)):
        assert detector.detect(image, thorough=True) == []             # the deeper search invents none


def test_missing_cascade_is_a_clear_error():
    with pytest.raises(RuntimeError, match="could not load the Haar cascade"):
        FaceDetector(DetectorConfig(cascade="no_such_cascade.xml"))
    with pytest.raises(RuntimeError, match="no_such_fallback.xml"):
        FaceDetector(DetectorConfig(fallback_cascades=("no_such_fallback.xml",)))


def test_config_round_trips_through_a_dict():
    cfg = DetectorConfig(max_side=240, scale_factor=1.2, min_face_frac=0.15, fallback_angles=(-20.0, 20.0))
    assert DetectorConfig.from_dict({**cfg.to_dict(), "other": 1}) == cfg
    assert DetectorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg   # lists back to tuples
    assert DetectorConfig.from_dict(None) == DetectorConfig()
