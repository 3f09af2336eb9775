"""The live frame processor: annotated frames, thread-safe figures, the label record and the smile
shutter (real frames from smile_video.mp4, real bundled models)."""
import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av
import numpy as np
import pytest

from core.detect import FaceDetector
from core.pipeline import Pipeline
from core.stream import FrameProcessor, Shutter, StreamConfig, video_frame


def in_worker(coro):
    """Run a coroutine on its own event loop in another thread, as streamlit-webrtc's worker thread does
    (this thread may already run one: Playwright's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def feed(processor, frames, fps=15.0, start=100.0):
    """Process frames as if they came at `fps`; return the annotated frames."""
    return [processor.process(f, now=start + i / fps) for i, f in enumerate(frames)]


@pytest.fixture(scope="module")
def pipeline(smile_classifier):
    return Pipeline(smile_classifier, FaceDetector())


def test_frames_are_annotated_and_counted(pipeline, smile_frames, tmp_path):
    log = tmp_path / "labels.jsonl"
    processor = FrameProcessor(pipeline, StreamConfig(log_path=log))
    frames = smile_frames[:30]
    out = feed(processor, frames)
    assert all(o.shape == f.shape and o.dtype == np.uint8 for o, f in zip(out, frames))
    assert all(np.any(o != f) for o, f in zip(out, frames)), "each frame gets a box and a label drawn"
    assert not np.shares_memory(out[0], frames[0]), "the camera's frame is not drawn on"
    s = processor.stats()
    assert s.frames == 30
    assert s.fps == pytest.approx(15.0, rel=1e-6)
    assert 0 < s.latency_ms <= s.latency_p95_ms
    assert s.labels and set(s.labels) <= {"smile", "no smile"}
    assert [r.frame for r in s.records] == list(range(30))
    assert all(len(r.probs[0]) == 2 and abs(sum(r.probs[0]) - 1) < 1e-3 for r in s.records)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(30))
    assert lines[-1]["labels"] == list(s.labels)


def test_reset_forgets_everything(pipeline, smile_frames):
    processor = FrameProcessor(pipeline)
    feed(processor, smile_frames[:5])
    processor.reset()
    s = processor.stats()
    assert (s.frames, s.fps, s.records, s.current, s.snapshot) == (0, 0.0, (), None, None)


def test_history_and_window_are_bounded(pipeline, smile_frames):
    processor = FrameProcessor(pipeline, StreamConfig(window=10, history=20))
    feed(processor, smile_frames[:40])
    s = processor.stats()
    assert s.frames == 40 and len(s.records) == 20 and s.records[-1].frame == 39


def test_shutter_fires_once_per_held_smile():
    shutter = Shutter(hold_s=1.0)
    fired = [shutter.update(0.9, 0.5, t / 10) for t in range(25)]   # 2.5 s above the threshold
    assert fired.count(True) == 1 and fired.index(True) == 10
    assert not shutter.update(0.2, 0.5, 2.6)                         # the smile ends: re-armed
    fired = [shutter.update(0.9, 0.5, 3 + t / 10) for t in range(12)]
    assert fired.count(True) == 1
    assert not any(shutter.update(p, 0.5, 5 + t) for t, p in enumerate([0.9, 0.1, 0.9, None, 0.9]))


def test_shutter_captures_clean_and_annotated_frames(smile_classifier, smile_frames):
    # threshold 0: every face counts as smiling, so the shutter must fire after one second of frames
    processor = FrameProcessor(Pipeline(smile_classifier, FaceDetector(), threshold=0.0),
                               StreamConfig(shutter_hold_s=1.0))
    frames = smile_frames[:20]
    feed(processor, frames, fps=10.0)
    snap = processor.stats().snapshot
    assert snap is not None and snap.number == 1
    np.testing.assert_array_equal(snap.clean, frames[10])
    assert snap.annotated.shape == frames[10].shape and np.any(snap.annotated != snap.clean)
    assert 0.0 <= snap.probability <= 1.0


def test_no_face_no_label_no_snapshot(pipeline):
    processor = FrameProcessor(pipeline, StreamConfig(shutter_hold_s=0.0))
    blank = np.full((480, 640, 3), 90, np.uint8)
    out = feed(processor, [blank] * 5)
    np.testing.assert_array_equal(out[-1], blank)
    s = processor.stats()
    assert s.frames == 5 and s.labels == () and s.snapshot is None


def test_callback_converts_video_frames_and_keeps_timestamps(pipeline, smile_frames):
    processor = FrameProcessor(pipeline)
    frame = av.VideoFrame.from_ndarray(smile_frames[30], format="rgb24")
    frame.pts, frame.time_base = 4500, Fraction(1, 90000)
    out = processor.callback(frame.reformat(format="yuv420p"))
    assert isinstance(out, av.VideoFrame) and (out.width, out.height) == (frame.width, frame.height)
    assert out.pts == 4500
    s = processor.stats()
    assert s.frames == 1 and s.latency_ms > 0
    assert s.current.source_t == pytest.approx(0.05), "the record keeps the frame's capture time"


def test_frames_queued_behind_a_stall_are_labelled_and_only_the_newest_is_sent(pipeline, smile_frames):
    """streamlit-webrtc hands over every frame that queued while the last one was processed: the newest
    `catch_up` older ones are labelled (no drawing) and enter the record, older ones are counted as
    skipped, and only the newest frame comes back, annotated."""
    frames = []
    for i in range(5):
        f = av.VideoFrame.from_ndarray(smile_frames[30 + i], format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = i * 6000, Fraction(1, 90000)
        frames.append(f)
    processor = FrameProcessor(pipeline, StreamConfig(catch_up=2))
    out = in_worker(processor.queued_callback(frames))
    assert len(out) == 1 and out[0].pts == frames[-1].pts
    s = processor.stats()
    assert (s.frames, s.skipped) == (3, 2)
    assert [r.source_t for r in s.records] == pytest.approx([frames[i].time for i in (2, 3, 4)])
    assert all(len(r.labels) == 1 for r in s.records), "each labelled frame has its face"
    one_by_one = FrameProcessor(pipeline)     # the same three frames, each through the callback
    sent = [one_by_one.callback(f).to_ndarray(format="rgb24") for f in frames[2:]][-1]
    assert np.array_equal(out[0].to_ndarray(format="rgb24"), sent), "the newest frame, annotated as usual"
    assert not np.array_equal(sent, frames[-1].to_ndarray(format="rgb24"))
    one = in_worker(processor.queued_callback([frames[0]]))   # no queue: nothing skipped
    assert len(one) == 1 and processor.stats().frames == 4 and processor.stats().skipped == 2
    rgb = smile_frames[31]
    assert processor.process(rgb, draw=False) is rgb, "label only: the frame is not copied or drawn on"


def test_annotated_frames_go_to_the_encoder_as_yuv420p(pipeline, smile_frames):
    """The callback's frame is already in the VP8 encoder's format (no conversion per frame sent), and
    shows the annotated picture, through libvpx and back; a frame of odd size, which 4:2:0 cannot hold,
    stays RGB."""
    out = FrameProcessor(pipeline).process(smile_frames[30])
    frame = video_frame(out)
    assert frame.format.name == "yuv420p" and (frame.width, frame.height) == (out.shape[1], out.shape[0])
    back = frame.to_ndarray(format="rgb24").astype(int)
    assert np.abs(back - out).mean() < 3, "the picture is the annotated frame (4:2:0 blurs only colour)"
    encoder = av.CodecContext.create("libvpx", "w")    # the codec aiortc's VP8 encoder drives
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, "yuv420p"
    encoder.time_base = Fraction(1, 90000)
    frame.pts, frame.time_base = 0, Fraction(1, 90000)
    packets = encoder.encode(frame) + encoder.encode(None)
    decoder = av.CodecContext.create("libvpx", "r")
    decoded = [f for p in packets for f in decoder.decode(p)]
    assert len(decoded) == 1
    assert np.abs(decoded[0].to_ndarray(format="rgb24").astype(int) - out).mean() < 6
    odd = video_frame(out[:-1, :-1])
    assert odd.format.name == "rgb24" and (odd.width, odd.height) == (out.shape[1] - 1, out.shape[0] - 1)


def test_probability_history_chart_of_the_largest_face(pipeline, smile_frames):
    """At most HISTORY_POINTS points a class, evenly spaced, ending with the latest frame; None with no face."""
    from core.charts import HISTORY_POINTS, probability_history

    processor = FrameProcessor(pipeline)
    feed(processor, smile_frames[:150])
    s = processor.stats()
    spec = probability_history(s.records, pipeline.task)
    names = list(pipeline.task.display_names)
    values = spec["data"]["values"]
    assert [v["class"] for v in values] == names * (len(values) // len(names))
    with_face = [r for r in s.records if r.probs]
    kept = with_face[::-1][::-(-len(with_face) // HISTORY_POINTS)][::-1]
    assert [v["probability"] for v in values] == [p for r in kept for p in r.probs[0]]
    assert len(kept) <= HISTORY_POINTS and kept[-1] is s.records[-1]
    times = [v["time"] for v in values[::len(names)]]
    assert times[-1] == 0.0 and times == sorted(times)
    assert spec["encoding"]["color"]["scale"]["domain"] == names
    assert spec["encoding"]["color"]["scale"]["range"] == ["#5a8cff", "#ffc800"], "the overlay's class colours"
    assert len(probability_history(s.records[:10], pipeline.task)["data"]["values"]) == 10 * len(names)
    empty = FrameProcessor(pipeline)
    empty.process(np.zeros((480, 640, 3), np.uint8))
    assert probability_history(empty.stats().records, pipeline.task) is None


def test_a_bad_frame_is_reported_and_the_stream_goes_on(pipeline, smile_frames):
    processor = FrameProcessor(pipeline)
    bad = np.zeros((0, 0, 3), np.uint8)
    assert processor.process(bad) is bad
    assert processor.stats().error
    processor.process(smile_frames[0])
    assert processor.stats().frames == 1


def test_stats_can_be_read_while_frames_are_processed(pipeline, smile_frames):
    processor = FrameProcessor(pipeline)
    done, seen, errors = threading.Event(), [], []

    def poll():
        try:
            while not done.is_set():
                s = processor.stats()
                seen.append(s.frames)
                assert len(s.records) <= s.frames
        except Exception as exc:  # surfaced below
            errors.append(exc)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for f in smile_frames[:40]:
            processor.process(f)
    finally:
        done.set()
        reader.join()
    assert not errors
    assert seen == sorted(seen), "the count never goes back"
    assert processor.stats().frames == 40


def test_model_change_takes_effect_on_the_next_frame(pipeline, expression_classifier, expressions_dir):
    from core.imageio import load_image

    happy = load_image(expressions_dir / "happy.jpg")
    processor = FrameProcessor(pipeline)
    processor.process(happy)
    assert set(processor.stats().labels) <= {"smile", "no smile"}
    processor.set_pipeline(Pipeline(expression_classifier, FaceDetector()))
    out = processor.process(happy)
    s = processor.stats()
    assert s.labels and s.labels[0] in expression_classifier.task.display_names
    assert s.class_names == expression_classifier.task.class_names and len(s.current.probs[0]) == 7
    assert np.any(out != happy)


def test_a_pause_restarts_the_figures_but_keeps_the_record(pipeline, smile_frames):
    processor = FrameProcessor(pipeline, StreamConfig(gap_s=2.0))
    feed(processor, smile_frames[:10], fps=15.0, start=100.0)
    feed(processor, smile_frames[10:20], fps=15.0, start=200.0)      # the camera came back later
    s = processor.stats()
    assert s.frames == 20 and len(s.records) == 20
    assert s.fps == pytest.approx(15.0), "fps counts only the frames since the pause"
