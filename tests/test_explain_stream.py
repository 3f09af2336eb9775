"""Heat maps on live video (core.stream): the last frame and the shutter's snapshot keep their faces for
"Explain this frame"; live heat maps are off by default, and when on, made at most a few times a second."""
import numpy as np
import pytest

from core.detect import FaceDetector
from core.explain import Explainer, explain_faces
from core.pipeline import Pipeline
from core.stream import FrameProcessor, StreamConfig


def feed(processor, frames, fps=15.0, start=100.0):
    return [processor.process(f, now=start + i / fps) for i, f in enumerate(frames)]


@pytest.fixture(scope="module")
def pipeline(smile_classifier):
    return Pipeline(smile_classifier, FaceDetector())


@pytest.fixture(scope="module")
def explainer(smile_classifier):
    return Explainer(smile_classifier)


def test_the_latest_frame_can_be_explained_and_nothing_is_explained_live_by_default(pipeline, explainer,
                                                                                    smile_frames):
    processor = FrameProcessor(pipeline)
    frames = smile_frames[:10]
    feed(processor, frames)
    s = processor.stats()
    assert s.why is None, "no explanation in the frame callback unless switched on"
    latest = s.latest
    assert latest.number == 9 and latest.clean is frames[9], "the camera's frame itself, not a copy"
    assert len(latest.faces) == 1 and latest.faces[0].label == s.labels[0]
    found = explain_faces(explainer, latest.clean, [f.box for f in latest.faces], [f.index for f in latest.faces])
    assert found[0].explanation.heat.shape == (64, 64) and found[0].explanation.heat.max() == pytest.approx(1.0)


def test_the_snapshot_keeps_its_faces(pipeline, smile_frames):
    processor = FrameProcessor(pipeline, StreamConfig(shutter_hold_s=0.3))
    feed(processor, smile_frames)
    snap = processor.stats().snapshot
    assert snap is not None, "the video's smile fires the shutter"
    assert snap.faces and snap.faces[0].class_name == "smile"


def test_live_heat_maps_are_rate_limited_and_drawn_over_the_faces(pipeline, explainer, smile_frames):
    live = FrameProcessor(pipeline)
    live.set_explainer(explainer, every_s=0.5)
    frames = smile_frames[:30]                     # two seconds at 15 fps
    seen = []
    for i, f in enumerate(frames):
        live.process(f, now=100.0 + i / 15)
        why = live.stats().why
        seen.append(None if why is None else why.frame)
    made = sorted(set(x for x in seen if x is not None))
    assert made == [0, 8, 16, 24], "one explained frame each half second"
    out_live = live.process(frames[0], now=103.0)
    assert interior_change(out_live, frames[0], live.stats().why.faces[0].box) > 5, \
        "the heat map is blended over the face"
    live.set_explainer(None)
    assert live.stats().why is None
    again = live.process(frames[1], now=104.0)
    assert interior_change(again, frames[1], live.stats().latest.faces[0].box) == 0, "off again: no heat map"


def interior_change(out: np.ndarray, clean: np.ndarray, box) -> float:
    """Mean change of the pixels inside a face's box, away from its drawn border."""
    x, y, w, h = box
    m = max(4, w // 8)
    return float(np.abs(out[y + m:y + h - m, x + m:x + w - m].astype(int) - clean[y + m:y + h - m, x + m:x + w - m]).mean())
