"""Upload: several images, or one video, annotated by the selected model."""
import dataclasses
import tempfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from core.calibrate import calibrate_to_photo
from core.draw import draw_faces
from core.explain import METHODS, explain_faces, heat_picture
from core.imageio import ImageError, load_image
from core.pipeline import Face
from core.predict_video import face_summaries, share_text, stretch_text
from core.video import VideoError, VideoLimits, annotate_video
from pages.common import (Selection, get_explainer, get_pipeline, set_rule, show_calibration_result, show_error,
                          show_why, sidebar)

IMAGE_TYPES = ["jpg", "jpeg", "png", "bmp", "webp", "gif", "tif", "tiff"]
VIDEO_TYPES = ["mp4", "mov", "m4v", "avi", "mkv", "webm"]
DISPLAY_SIDE = 1280          # annotated pictures are shown (not analysed) at most this large
LIMITS = VideoLimits()


def display_copy(image, faces: list[Face]):
    """A display-sized copy of the image with the faces drawn on it."""
    import cv2

    h, w = image.shape[:2]
    s = min(1.0, DISPLAY_SIDE / max(h, w))
    small = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else image.copy()
    scaled = [dataclasses.replace(f, box=tuple(round(v * s) for v in f.box)) for f in faces]
    return draw_faces(small, scaled)


@st.cache_data(max_entries=64, show_spinner=False)
def analyse_image(data: bytes, name: str, model_key: tuple, threshold: float | None, crops: bool,
                  class_bias: tuple | None, _pipeline) -> dict:
    """Faces of one uploaded image (cached per file, model, decision rule and views): the annotated picture
    for display, one table row per face, or an error message."""
    try:
        image = load_image(data, name)
    except ImageError as exc:
        return {"name": name, "error": str(exc), "rows": []}
    faces = _pipeline(image, thorough=True)  # a photo: a deeper search if the first finds nothing
    rows = [{"file": name, "face": i + 1, **f.as_row()} for i, f in enumerate(faces)]
    return {"name": name, "error": "", "rows": rows, "faces": faces, "annotated": display_copy(image, faces)}


@st.cache_data(max_entries=32, show_spinner="Finding what each label rests on…")
def explain_image(data: bytes, name: str, model_key: tuple, threshold: float | None, crops: bool,
                  class_bias: tuple | None, _explainer, _faces: list[Face]) -> dict:
    """Heat maps of an uploaded image's faces (both methods) and the picture with them over the faces."""
    image = load_image(data, name)
    found = explain_faces(_explainer, image, [f.box for f in _faces], [f.index for f in _faces], METHODS)
    return {"found": found, "annotated": display_copy(heat_picture(image, found, _explainer.preprocess), _faces)}


def calm_photo_section(selection: Selection) -> None:
    """Calibration of the sidebar's rule to a calm photo of the user, as the Webcam page's button does."""
    with st.expander("Calibrate to a calm photo of you", icon=":material/tune:"):
        st.caption("Does your calm face read sad, angry or afraid, or as a smile? Give a photo of it: "
                   + ("the threshold rises" if selection.task.is_binary else
                      "the classes it leans to get lower offsets")
                   + " just far enough that it reads calm, here and on the Webcam page (the sidebar shows it).")
        photo = st.file_uploader("A photo of you with a calm face", type=IMAGE_TYPES, key="upload.calm")
        if photo is not None and st.button("Calibrate", key="upload.calibrate", icon=":material/tune:"):
            try:
                image = load_image(photo.getvalue(), photo.name)
            except ImageError as exc:
                show_error(exc)
                return
            result = calibrate_to_photo(get_pipeline(selection), image)
            st.session_state["upload.calibrated"] = (selection.model_key, result)
            if result.changed:
                set_rule(selection, result)
                st.rerun()           # the sidebar and every table follow the new rule
        show_calibration_result(selection, "upload.calibrated")


def images_tab(files, selection: Selection) -> None:
    if not files:
        st.caption("JPEG, PNG, BMP, WebP, GIF or TIFF; as many as you like.")
        return
    pipeline = get_pipeline(selection)
    why = st.toggle("Why?", key="upload.why", help="Per face: the crop the model saw, where the evidence for its "
                    "label lies (heat maps) and the probability of every class.")
    results = [analyse_image(f.getvalue(), f.name, selection.model_key, selection.threshold,
                             selection.crops, selection.class_bias, pipeline) for f in files]
    explainer = get_explainer(selection) if why else None
    explained = [explain_image(f.getvalue(), f.name, selection.model_key, selection.threshold, selection.crops,
                               selection.class_bias, explainer, res["faces"]) if explainer and res.get("faces") else None
                 for f, res in zip(files, results)]
    rows = [r for res in results for r in res["rows"]]
    if rows:
        table = pd.DataFrame(rows)
        st.dataframe(table, hide_index=True, key="faces-table")
        st.download_button("Download the table (CSV)", table.to_csv(index=False).encode(), "grin-faces.csv",
                           mime="text/csv", on_click="ignore", icon=":material/download:")
    columns = st.columns(min(3, len(results)))
    for i, res in enumerate(results):
        with columns[i % len(columns)]:
            if res["error"]:
                show_error(res["error"])
                continue
            st.image(explained[i]["annotated"] if explained[i] else res["annotated"], caption=res["name"])
            if not res["rows"]:
                st.warning(f"{res['name']}: no face found. Grin finds faces seen from the front, "
                           "not too small in the picture.", icon=":material/face_retouching_off:")
    for i, (res, why_res) in enumerate(zip(results, explained)):
        if why_res:
            st.markdown(f"**Why: {res['name']}**")
            show_why(why_res["found"], res["faces"], key=f"why-{i + 1}")


def video_tab(file, selection: Selection) -> None:
    if file is None:
        st.caption(f"MP4, MOV, AVI, MKV or WebM; up to {LIMITS.max_seconds:.0f} s and "
                   f"{LIMITS.max_bytes // 2**20} MB.")
        return
    key = (file.file_id, selection.model_key, selection.threshold, selection.crops, selection.class_bias)
    done = st.session_state.get("upload.video")
    if done is None or done["key"] != key:
        done = st.session_state["upload.video"] = run_video(file, key, get_pipeline(selection))
    if done["error"]:
        show_error(done["error"])
        return
    if done["warning"]:
        st.warning(done["warning"])
    left, right = st.columns(2)
    with left:
        st.video(done["mp4"], format="video/mp4")
        st.download_button("Download the annotated video", done["mp4"], f"grin-{Path(file.name).stem}.mp4",
                           mime="video/mp4", on_click="ignore", icon=":material/download:")
        st.caption(f"{done['frames']} frames at {done['fps']:.1f} fps, encoded with {done['encoder']}.")
    timeline = pd.DataFrame(done["timeline"])
    with right:
        if timeline.empty:
            st.warning(f"{file.name}: no face found in the video.", icon=":material/face_retouching_off:")
        else:
            st.plotly_chart(timeline_figure(timeline, selection), key="video-timeline")
            st.dataframe(pd.DataFrame(done["faces"]), hide_index=True, key="video-faces")


def run_video(file, key, pipeline) -> dict:
    """Annotate the uploaded video with a progress bar; a dict for session state (errors included)."""
    bar = st.progress(0.0, text=f"Annotating {file.name}…")
    try:
        with tempfile.TemporaryDirectory(prefix="grin-video-") as tmp:
            result = annotate_video(file.getvalue(), Path(tmp) / "out.mp4", pipeline,
                                    name=file.name, limits=LIMITS,
                                    progress=lambda f, text: bar.progress(f, text=f"Annotating {file.name}: {text}"))
            mp4 = result.path.read_bytes()
    except VideoError as exc:
        return {"key": key, "error": str(exc)}
    finally:
        bar.empty()
    faces = [{"face": f["face"], "frames": f["frames"], "labels": share_text(f["label_share"]),
              "stretches of one label": stretch_text(f["stretches"])} for f in face_summaries(result.timeline)]
    return {"key": key, "error": "", "warning": result.warning, "mp4": mp4, "frames": result.frames,
            "fps": result.fps, "encoder": result.encoder, "timeline": result.timeline, "faces": faces}


def timeline_figure(timeline: pd.DataFrame, selection: Selection):
    """Probability over time for each face: the positive class for binary tasks, every class otherwise."""
    task = selection.task
    timeline = timeline.assign(face=timeline["face"].map(lambda n: f"face {n}"))
    if task.is_binary:
        col = f"p_{task.positive_class}"
        fig = px.line(timeline, x="time", y=col, color="face", labels={col: f"probability of {task.positive_class}"})
        if selection.threshold is not None:
            fig.add_hline(y=selection.threshold, line_dash="dot", annotation_text="threshold")
    else:
        cols = [f"p_{c}" for c in task.class_names]
        long = timeline.melt(id_vars=["time", "face"], value_vars=cols, var_name="class", value_name="probability")
        long["class"] = long["class"].str[2:]
        top = list(timeline["face"].value_counts().index[:3])
        fig = px.line(long[long["face"].isin(top)], x="time", y="probability", color="class", facet_row="face",
                      color_discrete_sequence=task.hex_colors)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="seconds", yaxis_range=[0, 1])
    return fig


st.title("Upload")
selection = sidebar()
get_pipeline(selection)  # loads the model once, or says why it cannot
calm_photo_section(selection)
images, video = st.tabs([":material/image: Images", ":material/movie: Video"])
with images:
    images_tab(st.file_uploader("Images", type=IMAGE_TYPES, accept_multiple_files=True, key="upload.images"), selection)
with video:
    video_tab(st.file_uploader("A video", type=VIDEO_TYPES, key="upload.video_file"), selection)
