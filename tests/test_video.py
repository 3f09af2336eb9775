"""Annotating video files: an H.264 MP4 out, a per-face timeline, limits and damaged files refused
with clear messages (videos made here with PyAV, and ../shared/media/smile_video.mp4)."""
from fractions import Fraction

import av
import numpy as np
import pytest

from core.detect import FaceDetector
from core.pipeline import Pipeline
from core.video import VideoError, VideoLimits, annotate_video, probe
from tests.conftest import SMILE_VIDEO, need


def make_video(path, frames: int = 30, size=(320, 240), fps: int = 15, codec: str = "libx264",
               pix_fmt: str = "yuv420p") -> bytes:
    """A video of a bright square moving over a grey background (no face), written with PyAV."""
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        for i in range(frames):
            img = np.full((h, w, 3), 100, np.uint8)
            x = (i * 7) % max(1, w - 40)
            img[h // 3:h // 3 + 40, x:x + 40] = (250, 220, 30)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    return path.read_bytes()


@pytest.fixture(scope="module")
def pipeline(smile_classifier):
    return Pipeline(smile_classifier, FaceDetector())


def read_back(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return s.codec_context.name, frames


def test_smile_video_is_annotated_with_a_timeline(pipeline, tmp_path):
    source = need(SMILE_VIDEO)
    seen = []
    result = annotate_video(source, tmp_path / "out.mp4", pipeline, progress=lambda f, text: seen.append(f))
    codec, frames = read_back(result.path)
    assert codec == "h264" and result.encoder in ("libx264", "h264")
    assert result.frames == len(frames) == 78 and frames[0].shape == (512, 512, 3)
    assert result.fps == pytest.approx(25.0)
    assert result.path.read_bytes()[4:8] == b"ftyp"
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 5
    rows = result.timeline
    assert result.faces_found and {r["frame"] for r in rows} == set(range(78)), "the face is in every frame"
    assert all(0.0 <= r["p_smile"] <= 1.0 and abs(r["p_smile"] + r["p_non_smile"] - 1) < 1e-3 for r in rows)
    assert rows[-1]["time"] == pytest.approx(77 / 25, abs=0.05)
    main = max({r["face"] for r in rows}, key=lambda f: sum(r["face"] == f for r in rows))
    assert sum(r["face"] == main for r in rows) >= 75, "one face track through the video"
    # the annotation is drawn: the output differs from the source beyond compression noise
    with av.open(str(source)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(frames[0].astype(int) - first).max() > 100


def test_a_video_without_faces_has_an_empty_timeline(pipeline, tmp_path):
    data = make_video(tmp_path / "in.mov", frames=20, size=(321, 241), codec="png", pix_fmt="rgb24")
    result = annotate_video(data, tmp_path / "out.mp4", pipeline, name="squares.mp4")
    codec, frames = read_back(result.path)
    assert result.frames == len(frames) == 20 and not result.faces_found
    assert frames[0].shape[:2] == (240, 320), "odd sizes become even for H.264"


def test_large_frames_are_scaled_down(pipeline, tmp_path):
    data = make_video(tmp_path / "in.mp4", frames=3, size=(1280, 720))
    result = annotate_video(data, tmp_path / "out.mp4", pipeline, limits=VideoLimits(out_max_side=640))
    _, frames = read_back(result.path)
    assert frames[0].shape[:2] == (360, 640) and result.info.width == 1280


def test_other_containers_and_codecs_are_read(pipeline, tmp_path):
    data = make_video(tmp_path / "in.avi", frames=10, codec="mpeg4")
    info = probe(data, "in.avi")
    assert (info.width, info.height, info.codec) == (320, 240, "mpeg4")
    assert annotate_video(data, tmp_path / "out.mp4", pipeline).frames == 10


@pytest.mark.parametrize("limits, words", [
    (VideoLimits(max_seconds=1.0), "limit is 1 s"),
    (VideoLimits(max_frames=10), "limit is 10"),
    (VideoLimits(max_bytes=1000), "MB limit"),
    (VideoLimits(max_pixels=320 * 200), "megapixels"),
])
def test_limits_are_enforced_with_clear_messages(pipeline, tmp_path, limits, words):
    data = make_video(tmp_path / "in.mp4", frames=30, fps=15)   # 2 s, 320x240
    with pytest.raises(VideoError, match=words):
        annotate_video(data, tmp_path / "out.mp4", pipeline, name="clip.mp4", limits=limits)


def test_the_frame_limit_holds_even_when_the_header_does_not_say(pipeline, tmp_path):
    data = make_video(tmp_path / "in.webm", frames=25, codec="libvpx-vp9") if _has("libvpx-vp9") else None
    if data is None:
        pytest.skip("no VP9 encoder in this PyAV build")
    assert probe(data).frames == 0    # WebM does not store a frame count
    with pytest.raises(VideoError, match="more than 10 frames"):
        annotate_video(data, tmp_path / "out.mp4", pipeline, limits=VideoLimits(max_frames=10))


def _has(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
        return True
    except Exception:
        return False


def test_bad_files_raise_video_error(pipeline, tmp_path):
    good = make_video(tmp_path / "in.mp4", frames=30)
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            out.mux(p)
    cases = {"empty": (b"", "empty"), "text": (b"this is not a video\n" * 50, "not a video"),
             "head only": (good[:200], "not a video|damaged|cannot be decoded"),
             "audio": (audio.read_bytes(), "no video stream"),
             "missing": (tmp_path / "nope.mp4", "no such file")}
    for name, (data, words) in cases.items():
        with pytest.raises(VideoError, match=words):
            annotate_video(data, tmp_path / "out.mp4", pipeline, name=name)


def test_a_truncated_video_keeps_the_frames_before_the_damage(pipeline, tmp_path):
    data = make_video(tmp_path / "in.mkv", frames=60, codec="mpeg4")
    try:
        result = annotate_video(data[: len(data) // 2], tmp_path / "out.mp4", pipeline, name="cut.mkv")
    except VideoError as exc:
        assert "cut.mkv" in str(exc)
        return
    assert 0 < result.frames < 60
    codec, frames = read_back(result.path)
    assert len(frames) == result.frames


def test_a_faces_frames_become_stretches_of_one_label_and_label_shares():
    from core.predict_video import face_summaries, is_video

    rows = [{"frame": i, "time": i / 10, "face": 1, "label": lab}
            for i, lab in enumerate(["no smile"] * 3 + ["smile"] * 4 + ["no smile"])]
    rows += [{"frame": 2, "time": 0.2, "face": 2, "label": "smile"}, {"frame": 5, "time": 0.5, "face": 2, "label": "smile"}]
    one, two = face_summaries(sorted(rows, key=lambda r: r["frame"]))
    assert one["face"] == 1 and one["frames"] == 8
    assert one["label_share"] == {"smile": 0.5, "no smile": 0.5}
    assert [(s["label"], s["start"], s["end"], s["frames"]) for s in one["stretches"]] == [
        ("no smile", 0.0, 0.2, 3), ("smile", 0.3, 0.6, 4), ("no smile", 0.7, 0.7, 1)]
    # a face lost between frames 2 and 5 starts a new stretch when it comes back, even with the same label
    assert [(s["start"], s["frames"]) for s in two["stretches"]] == [(0.2, 1), (0.5, 1)]
    assert is_video("clip.MP4") and is_video("a/b.webm") and not is_video("face.jpg")
