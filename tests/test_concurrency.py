"""Several sessions share one Classifier and one FaceDetector (st.cache_resource): hammered from
threads, they must give exactly what they give one call at a time."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from core.detect import FaceDetector
from core.imageio import load_image
from core.model import Classifier
from core.pipeline import Pipeline
from core.preprocess import crop_faces

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
THREADS, ROUNDS = 4, 3


def _real_frames() -> list[np.ndarray]:
    """Face photos and video frames from ../shared/media (empty when it is absent)."""
    frames = [load_image(p) for p in sorted((SHARED / "media" / "expressions").glob("*.jpg"))]
    video = SHARED / "media" / "smile_video.mp4"
    if video.is_file():
        with av.open(str(video)) as c:
            frames += [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % 20 == 0]
    return frames


def _synthetic_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((480, 640), (720, 1280))]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return _real_frames() + _synthetic_frames()


@pytest.fixture(scope="module")
def classifier(smile_classifier) -> Classifier:
    """The bundled smile model, loaded once (tests/conftest.py)."""
    return smile_classifier


def _hammer(fn, items: list, threads: int = THREADS, rounds: int = ROUNDS) -> list[tuple[int, object]]:
    """Call fn on every item, `rounds` times per thread, in a different order in each thread, all at once."""
    start = threading.Barrier(threads)

    def worker(seed: int):
        start.wait()
        order = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(items)), rounds))
        return [(int(i), fn(items[i])) for i in order]

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(worker, range(threads)))
    return [r for rs in results for r in rs]


def test_face_detector_gives_the_same_boxes_from_many_threads(frames):
    if not _real_frames():
        pytest.skip("../shared/media is absent: no real faces to detect (synthetic frames alone have none)")
    detector = FaceDetector()
    reference = [detector.detect(f) for f in frames]
    assert sum(len(b) > 0 for b in reference) >= 7, "the real photos should have faces"
    for i, boxes in _hammer(detector.detect, frames, rounds=2):
        assert boxes == reference[i]


def test_classifier_gives_the_same_probabilities_from_many_threads(classifier, frames):
    rng = np.random.default_rng(1)
    size = classifier.preprocess.input_shape
    batches = [rng.integers(0, 255, (n, *size), dtype=np.uint8) for n in (1, 2, 5, 16)]
    detector = FaceDetector()
    real = [crop_faces(f, detector.detect(f), classifier.preprocess) for f in frames]
    batches += [b for b in real if len(b)]
    reference = [classifier.predict(b) for b in batches]
    singles = np.concatenate([r[:1] for r in reference])
    assert np.ptp(singles, axis=0).max() > 1e-3, "inputs should give different outputs, or mix-ups go unseen"
    for i, probs in _hammer(classifier.predict, batches):
        np.testing.assert_allclose(probs, reference[i], rtol=0, atol=1e-5)


def test_one_pipeline_per_session_over_shared_models(classifier, frames):
    """What the webcam page does: each session its own Pipeline, the models shared."""
    detector = FaceDetector()
    reference = [[(f.box, f.label) for f in Pipeline(classifier, detector)(fr)] for fr in frames]
    local = threading.local()

    def session_call(frame):
        if not hasattr(local, "pipeline"):
            local.pipeline = Pipeline(classifier, detector)
        faces = local.pipeline(frame)
        assert local.pipeline.last_timing.total_ms > 0
        return [(f.box, f.label) for f in faces]

    for i, faces in _hammer(session_call, frames, rounds=1):
        assert faces == reference[i]


def test_a_frozen_server_leaves_its_models_out_of_collections_and_still_frees_garbage(classifier):
    """freeze_long_lived (the app calls it after each model load): the objects alive
    then, the loaded model's among them, are no longer walked by automatic collections; cycles made later
    are collected as before, and frozen ones dropped since (a model out of the cache) at the next call."""
    import gc
    import weakref

    from core.runtime import freeze_long_lived

    class Node:
        pass

    def cycle() -> tuple[weakref.ref, Node]:
        a, b = Node(), Node()
        a.other, b.other = b, a            # a reference cycle: only the collector can free it
        return weakref.ref(a), a

    try:
        old, held = cycle()
        freeze_long_lived()
        frozen = gc.get_freeze_count()
        assert frozen > 100_000, "TensorFlow's and the model's objects are frozen"
        assert not any(o is classifier for o in gc.get_objects(generation=2)), "the model is out of the walk"
        new = cycle()[0]
        gc.collect()
        assert new() is None, "garbage made after the freeze is collected as before"
        del held
        gc.collect()
        assert old() is not None, "a frozen cycle is left alone by collections"
        freeze_long_lived()
        assert old() is None, "and freed by the next freeze once dropped"
    finally:
        gc.unfreeze()


def test_the_app_keeps_keras_session_once_keras_is_imported_and_imports_nothing_itself():
    """keep_keras_session (app.py calls it after every script run, before Streamlit's keras.backend.clear_session()):
    before anything imported Keras it imports nothing; afterwards clear_session no longer resets Keras's global
    state (Keras's own counters run on) and TensorFlow's objects are out of the collector's passes. Without it,
    clear_session resets the counters (checked first, so the test fails where the patch does not take)."""
    import json
    import subprocess
    import sys

    code = """
import gc, json, sys
from core.runtime import keep_keras_session, tensorflow
keep_keras_session()
imported = "keras" in sys.modules or "tensorflow" in sys.modules
tensorflow()
import keras
keras.backend.get_uid("grin"); keras.backend.clear_session()
reset = keras.backend.get_uid("grin")
keep_keras_session(); keep_keras_session()
first = keras.backend.get_uid("grin"); keras.backend.clear_session()
print(json.dumps({"imported": imported, "reset": reset, "first": first, "after": keras.backend.get_uid("grin"),
                  "frozen": gc.get_freeze_count()}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["imported"] is False, "nothing imported before a page needs Keras"
    assert r["reset"] == 1, "Keras's own clear_session resets its counters"
    assert r["after"] == r["first"] + 1, "once kept, clear_session leaves them"
    assert r["frozen"] > 100_000, "TensorFlow's objects are frozen"
