"""Webcam: live labels over WebRTC, live figures, and the smile shutter."""
import os
import time
from pathlib import Path

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from core.calibrate import CalmFaceCalibration
from core.charts import probability_history
from core.detect import LIVE_DETECTOR
from core.draw import draw_faces
from core.explain import METHODS, explain_faces, heat_picture
from core.imageio import encode_png
from core.rtc import rtc_configuration
from core.stream import FrameProcessor, StreamConfig, StreamStats
from core.tasks import Task
from pages.common import (Selection, get_explainer, get_pipeline, set_rule, show_calibration_result, show_error,
                          show_why, sidebar)

REFRESH_S = 1.0
LIVE_WHY_EVERY_S = 0.5           # live heat maps: at most two explained frames a second


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
        st.metric("Frames skipped", s.skipped, help="Frames that queued up behind a slow one and were dropped "
                  "unlabelled (the newest few of such a queue are labelled, only the newest shown): the server "
                  "did not keep up")
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
    spec = probability_history(s.records, task)
    if spec is not None:
        st.vega_lite_chart(spec, width="stretch", key="webcam.history")


def explain_frame(selection: Selection, frame, faces, key: str) -> None:
    """The frame with heat maps over its faces, and per face the crop, heat maps and probabilities
    (computed here, in the page's thread, once per `key`; kept in the session)."""
    explainer = get_explainer(selection)
    if explainer is None:
        return
    if faces[0].task != selection.task:
        st.info("That frame was labelled for another task: explain a new one.")
        return
    store, kind = st.session_state.setdefault("webcam.why", {}), key.split("-")[0]   # "frame" or "snapshot"
    key = f"{key}-{selection.model_key}"
    if store.get(kind, ("",))[0] != key:
        found = explain_faces(explainer, frame, [f.box for f in faces], [f.index for f in faces], METHODS)
        store[kind] = (key, found, draw_faces(heat_picture(frame, found, explainer.preprocess), list(faces)))
    _, found, picture = store[kind]
    st.image(picture, caption="Heat maps over the faces (Grad-CAM)")
    show_why(found, list(faces), key=f"why-{kind}")


def show_explain_button(s: StreamStats, selection: Selection) -> None:
    if st.button("Explain this frame", key="webcam.explain", icon=":material/psychology_alt:"):
        if s.latest is None:
            st.session_state.pop("webcam.frame", None)
            st.info("No frame yet: press START first.")
        else:
            st.session_state["webcam.frame"] = s.latest
    latest = st.session_state.get("webcam.frame")
    if latest is not None:
        if not latest.faces:
            st.warning("No face in that frame.", icon=":material/face_retouching_off:")
        else:
            explain_frame(selection, latest.clean, latest.faces, f"frame-{latest.number}")


def show_live_why(s: StreamStats) -> None:
    """The latest live heat maps (the video shows them over the faces)."""
    if s.why is not None and s.class_names == s.why.faces[0].task.class_names:
        show_why(list(s.why.found), list(s.why.faces), key="why-live")


def show_calibration(s: StreamStats, selection: Selection, pipeline, playing: bool) -> None:
    """Calibration to the user's calm face: the button, then a note while it reads the face, then the outcome
    (the new threshold or class offsets go to the sidebar, where they can be undone)."""
    state = st.session_state
    binary = selection.task.is_binary
    if st.button("Calibrate to my calm face", key="webcam.calibrate", icon=":material/tune:",
                 help="Look at the camera with a calm face and hold still for two seconds: "
                      + ("the threshold rises" if binary else "the classes your calm face leans to are lowered")
                      + " just far enough that your calm face reads calm, and your expressions still show."):
        state.pop("webcam.calibrated", None)
        if not playing:
            state.pop("webcam.calibrating", None)
            st.info("Press START first, then calibrate with a calm face.")
        else:
            state["webcam.calibrating"] = (selection.model_key, CalmFaceCalibration.for_pipeline(pipeline, time.time()))
    pending = state.get("webcam.calibrating")
    if pending is not None and not playing:      # the camera stopped before a still face was read
        state.pop("webcam.calibrating")
    elif pending is not None:
        key, calibration = pending
        result = calibration.update(s.records, time.time()) if key == selection.model_key else None
        if key != selection.model_key:
            state.pop("webcam.calibrating")
        elif result is None:
            st.info("Calibrating: look at the camera with a calm face and hold still…", icon=":material/hourglass_top:")
        else:
            state.pop("webcam.calibrating")
            state["webcam.calibrated"] = (key, result)
            if result.changed:
                set_rule(selection, result)
                st.rerun()           # the whole page: the sidebar shows the new setting, the stream uses it
    show_calibration_result(selection, "webcam.calibrated")


def show_snapshot(s: StreamStats, selection: Selection) -> None:
    if s.snapshot is None:
        st.caption("Smile shutter: hold a smile for a second and a picture appears here.")
        return
    snap = s.snapshot
    annotated = st.toggle("With labels", value=True, key="webcam.snapshot_labels")
    cache = st.session_state.setdefault("webcam.snapshot_png", {})
    key = (snap.number, annotated)
    if key not in cache:    # encoded once: the panel shows it again every refresh
        cache.clear()
        cache[key] = encode_png(snap.annotated if annotated else snap.clean)
    # output_format: without it Streamlit decodes the PNG and encodes a JPEG at every refresh
    st.image(cache[key], caption=f"Snapshot {snap.number} (probability {snap.probability:.0%})", output_format="PNG")
    st.download_button("Download the snapshot", cache[key], file_name=f"grin-snapshot-{snap.number}.png",
                       mime="image/png", on_click="ignore", icon=":material/download:")
    if snap.faces and st.toggle("Why?", key="webcam.snapshot_why", help="Where the evidence for each label lies"):
        explain_frame(selection, snap.clean, snap.faces, f"snapshot-{snap.number}")


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
        queued_video_frames_callback=processor.queued_callback,
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
    show_calibration(s, selection, pipeline, playing)
    show_history(s, selection.task)
    show_explain_button(s, selection)
    show_live_why(s)
    show_snapshot(s, selection)


with side:
    live_why = st.toggle("Live heat maps", key="webcam.live_why",
                         help=f"Grad-CAM over the faces in the video, for at most {1 / LIVE_WHY_EVERY_S:.0f} frames a "
                              "second (costs a few milliseconds each)")
    processor.set_explainer(get_explainer(selection) if live_why else None, LIVE_WHY_EVERY_S)
    live_panel()
