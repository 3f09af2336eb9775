"""Webcam: live labels over WebRTC, live figures, and the smile shutter."""
import os
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from core.detect import LIVE_DETECTOR
from core.imageio import encode_png
from core.rtc import rtc_configuration
from core.stream import FrameProcessor, StreamConfig, StreamStats
from core.tasks import Task
from pages.common import get_pipeline, show_error, sidebar

REFRESH_S = 1.0


def get_processor(pipeline) -> FrameProcessor:
    """This session's frame processor (kept across reruns; follows the sidebar's model)."""
    if "webcam.processor" not in st.session_state:
        log = os.environ.get("GRIN_WEBCAM_LOG")
        st.session_state["webcam.processor"] = FrameProcessor(pipeline, StreamConfig(log_path=Path(log) if log else None))
    processor = st.session_state["webcam.processor"]
    processor.set_pipeline(pipeline)
    return processor


def show_stats(s: StreamStats) -> None:
    with st.container(key="webcam-stats", horizontal=True):
        st.metric("Frames processed", s.frames)
        st.metric("Frames per second", f"{s.fps:.1f}")
        st.metric("Latency (median / p95)", f"{s.latency_ms:.0f} / {s.latency_p95_ms:.0f} ms")
    with st.container(key="webcam-label"):
        if s.current is None:
            st.markdown("Label: **waiting for frames**")
        elif not s.labels:
            st.markdown("Label: **no face**")
        else:
            st.markdown("Label: " + ", ".join(f"**{label}**" for label in s.labels))
    if s.error:
        show_error(f"Processing a frame failed: {s.error}")


def show_history(s: StreamStats, task: Task) -> None:
    """Probabilities of the largest face over the last frames."""
    if s.class_names != task.class_names:       # the model changed and no frame has come since
        return
    names = list(task.display_names)
    rows = [dict(zip(names, r.probs[0]), time=r.t) for r in s.records if r.probs]
    if rows:
        df = pd.DataFrame(rows)
        df["time"] = df["time"] - df["time"].iloc[-1]
        st.line_chart(df, x="time", y=names, height=200, x_label="seconds", y_label="probability",
                      color=["#%02x%02x%02x" % c for c in task.colors])


def show_snapshot(s: StreamStats) -> None:
    if s.snapshot is None:
        st.caption("Smile shutter: hold a smile for a second and a picture appears here.")
        return
    snap = s.snapshot
    annotated = st.toggle("With labels", value=True, key="webcam.snapshot_labels")
    image = snap.annotated if annotated else snap.clean
    st.image(image, caption=f"Snapshot {snap.number} (probability {snap.probability:.0%})")
    cache = st.session_state.setdefault("webcam.snapshot_png", {})
    key = (snap.number, annotated)
    if key not in cache:
        cache.clear()
        cache[key] = encode_png(image)
    st.download_button("Download the snapshot", cache[key], file_name=f"grin-snapshot-{snap.number}.png",
                       mime="image/png", on_click="ignore", icon=":material/download:")


st.title("Webcam")
selection = sidebar()
pipeline = get_pipeline(selection, LIVE_DETECTOR)
processor = get_processor(pipeline)
try:
    rtc = rtc_configuration()
except ValueError as exc:
    show_error(exc)
    st.stop()

video, side = st.columns([3, 2])
with video:
    ctx = webrtc_streamer(
        key="grin-webcam",
        mode=WebRtcMode.SENDRECV,
        video_frame_callback=processor.callback,
        media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
        frontend_rtc_configuration=rtc,
        server_rtc_configuration=rtc,
        async_processing=True,
    )
    st.caption("Press START and allow the camera. No picture? The browser needs a camera and your "
               "permission (see the camera icon in the address bar), and a page served from another "
               "computer must use HTTPS.")
playing = ctx.state.playing


@st.fragment(run_every=REFRESH_S if playing else None)
def live_panel() -> None:
    s = processor.stats()
    show_stats(s)
    show_history(s, selection.task)
    show_snapshot(s)


with side:
    live_panel()
