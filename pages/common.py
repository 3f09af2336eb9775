"""Shared UI for every page: the sidebar (task, model, threshold), cached models, small display helpers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from core.calibrate import NEUTRAL, Calibration, CalibrationConfig, changes_text, moved_offsets
from core.decision import own_offsets, with_offset
from core.detect import DetectorConfig, FaceDetector
from core.explain import Explainer, FaceExplanation, enlarge, overlay
from core.model import MODEL_FILE, Classifier, ModelError
from core.onnx_runtime import INT8_META, ONNX_META
from core.pipeline import Face, Pipeline
from core.registry import default_model, list_models
from core.runtime import freeze_long_lived
from core.tasks import TASKS, Task, get_task


def _leave_legacy_pages_mode() -> None:
    """Streamlit also reads pages/ as a legacy pages folder until app.py's st.navigation has run once in
    the server; a first visit straight to /webcam (say) would run that page alone, with a wrong menu.
    Switch the legacy mode off and rerun, so app.py builds the navigation."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_pages_mode()


CALIBRATION_MAX = CalibrationConfig().max_offset   # the most calibrations lower a class's offset, all together


@dataclass(frozen=True)
class Selection:
    """What the sidebar picked: a task, one of its models (None if it has none), its decision rule (a
    threshold, or offsets on the classes' log-probabilities) and whether its extra test-time crops are used."""

    task: Task
    model_path: Path | None
    threshold: float | None          # binary tasks only; None: the model decides (argmax)
    crops: bool = True
    class_bias: tuple[float, ...] | None = None   # None: the model's own offsets

    @property
    def model_key(self) -> tuple[str, float]:
        """(path, modification time): changes when the model file or an export is replaced, so caches reload it."""
        return (str(self.model_path), model_mtime(self.model_path)) if self.model_path else ("", 0.0)


def model_mtime(path: Path) -> float:
    """The latest change of the model file or of an export beside it (a new export is served at once)."""
    times = []
    for name in (MODEL_FILE, ONNX_META, INT8_META):
        try:
            times.append((Path(path) / name).stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


def remember(key: str, default, options: list | None = None) -> str:
    """The widget key for a setting that survives pages that do not show its widget (Streamlit drops
    the state of widgets it does not render). Give the returned key to the widget, with no default."""
    store, widget = f"grin.{key}", f"grin.widget.{key}"
    if store not in st.session_state or (options is not None and st.session_state[store] not in options):
        st.session_state[store] = default
    st.session_state[widget] = st.session_state[store]
    return widget


def _keep(key: str) -> None:
    st.session_state[f"grin.{key}"] = st.session_state[f"grin.widget.{key}"]


def _rule_key(task: Task, path: str | Path) -> str:
    """The setting that holds a model's decision rule: its threshold (binary tasks) or its neutral offset."""
    return f"{'threshold' if task.is_binary else 'neutral'}.{path}"


def _calibration_key(path: str | Path) -> str:
    return f"grin.calibration.{path}"


def set_rule(selection: Selection, calibration: Calibration) -> None:
    """Make the sidebar use a calibration's rule for the selected model from the next run on: its threshold
    (binary tasks), or its offset changes added to those of earlier calibrations."""
    if selection.task.is_binary:
        st.session_state[f"grin.{_rule_key(selection.task, selection.model_path)}"] = round(calibration.threshold, 2)
        return
    key = _calibration_key(selection.model_path)
    deltas = dict(st.session_state.get(key, {}))
    for name, delta in calibration.changes.items():
        deltas[name] = max(-CALIBRATION_MAX, round(deltas.get(name, 0.0) + delta, 2))
    st.session_state[key] = deltas


def show_calibration_result(selection: Selection, key: str) -> None:
    """The outcome of the last calibration kept under `key` (as (model key, Calibration)), for this model."""
    done = st.session_state.get(key)
    if done is None or done[0] != selection.model_key:
        return
    result = done[1]
    if result.changed:
        undo = ("The sidebar's threshold holds it; move it back to undo." if selection.task.is_binary else
                "The sidebar shows it; \"Forget the calibration\" there undoes it.")
        st.success(f"{result.message} {undo}", icon=":material/check_circle:")
    elif result.status == "unchanged":
        st.info(result.message)
    else:
        st.warning(result.message)


def _forget_calibration(path: str) -> None:
    st.session_state.pop(_calibration_key(path), None)


def _calibrated(class_bias: tuple[float, ...] | None, meta, task: Task, path: str) -> tuple[float, ...] | None:
    """The sidebar's offsets with this session's calibrations to the user's calm face added (shown, with a
    button that forgets them)."""
    deltas = st.session_state.get(_calibration_key(path))
    if not deltas:
        return class_bias
    st.caption(f"Calibrated to your calm face: {changes_text(deltas, task)} (offsets of the classes it leaned to)")
    st.button("Forget the calibration", key=f"forget.{path}", on_click=_forget_calibration, args=(path,),
              icon=":material/restart_alt:")
    return moved_offsets(class_bias or own_offsets(meta.class_bias, task.n_classes), deltas, task)


def choose_model(task: str, path: Path) -> None:
    """Make the sidebar pick this model for `task` from the next run on (e.g. a run just made the default)."""
    st.session_state[f"grin.model.{task}"] = str(Path(path).resolve())


def sidebar() -> Selection:
    """Render the sidebar pickers and return the selection (the same on every page)."""
    with st.sidebar:
        names = list(TASKS)
        task = get_task(st.radio("Task", names, format_func=lambda n: TASKS[n].title, horizontal=True,
                                 key=remember("task", names[0], names), on_change=_keep, args=("task",)))
        entries = {str(e.path.resolve()): e for e in list_models(task.name)}
        if not entries:
            st.warning(f"No {task.title.lower()} model yet: train one on the Training page.")
            return Selection(task, None, None)
        default = str(default_model(task.name).resolve())
        key = f"model.{task.name}"
        path = st.selectbox("Model", list(entries), format_func=lambda p: entries[p].label,
                            key=remember(key, default if default in entries else next(iter(entries)), list(entries)),
                            on_change=_keep, args=(key,))
        meta = entries[path].meta
        threshold = None
        if task.is_binary:
            key = _rule_key(task, path)
            threshold = st.slider(f"Decision threshold ({task.display_names[task.class_index(task.positive_class)]})",
                                  0.05, 0.95, step=0.01, key=remember(key, float(meta.threshold)),
                                  on_change=_keep, args=(key,),
                                  help=f"A face is '{task.positive_class}' when its probability reaches this. "
                                       f"The model's own choice is {meta.threshold:.2f}; the Webcam page can "
                                       "raise it from your calm face.")
        class_bias = None
        if not task.is_binary and NEUTRAL in task.class_names:
            n = task.class_names.index(NEUTRAL)
            own = round(float(meta.class_bias[n]), 2) if meta.class_bias else 0.0
            key = _rule_key(task, path)
            value = st.slider("Neutral offset", min(-1.0, own), max(1.5, own), step=0.1,
                              key=remember(key, own), on_change=_keep, args=(key,), format="%+.1f",
                              help=f"Added to the neutral class's log-probability before the label is chosen; "
                                   f"the model's own is {own:+.2f}. Raise it if calm faces read sad, angry or "
                                   "afraid: more calm faces read neutral, for some accuracy on expressive ones (the "
                                   "model card gives the figures). For your own face, the Webcam page's calibration "
                                   "lowers only the classes your calm face leans to.")
            class_bias = _calibrated(with_offset(meta.class_bias, task.n_classes, n, round(value, 2)), meta, task, path)
        crops = True
        if meta.tta_crops:
            key = f"crops.{path}"
            views = (1 + len(meta.tta_crops)) * (2 if meta.tta_flip else 1)
            crops = st.toggle("Extra test-time crops", key=remember(key, True), on_change=_keep, args=(key,),
                              help=f"The model averages {views} views of each face (the face, {len(meta.tta_crops)} "
                                   f"corner crops, each mirrored): more accurate, about {views // 2}x the "
                                   "classifier's time. Off: the face and its mirror image only (faster, for "
                                   "live video on a slow machine).")
        if meta.arch or meta.metrics:
            acc = meta.metrics.get("test_accuracy")
            st.caption(f"{meta.arch or 'model'}" + (f" · test accuracy {acc:.2%}" if acc is not None else ""))
    return Selection(task, Path(path), threshold, crops, class_bias)


@st.cache_resource(show_spinner="Loading the model…", max_entries=6)
def load_classifier(path: str, mtime: float, crops: bool = True) -> Classifier:
    """One loaded model per (folder, file time, views), shared by all sessions."""
    classifier = Classifier(path, crops=crops)
    freeze_long_lived()     # the model, and the modules the page imported, stay out of later collections
    return classifier


@st.cache_resource(show_spinner=False)
def get_detector(config: DetectorConfig = DetectorConfig()) -> FaceDetector:
    return FaceDetector(config)


@st.cache_resource(show_spinner=False, max_entries=32)
def _pipeline(path: str, mtime: float, threshold: float | None, detector: DetectorConfig,
              crops: bool = True, class_bias: tuple[float, ...] | None = None) -> Pipeline:
    return Pipeline(load_classifier(path, mtime, crops), get_detector(detector), threshold, class_bias)


def get_pipeline(selection: Selection, detector: DetectorConfig = DetectorConfig()) -> Pipeline:
    """The pipeline for the sidebar's selection; stops the page with a clear message if there is none."""
    if selection.model_path is None:
        st.info(f"Grin needs a {selection.task.title.lower()} model first: train one on the Training page, "
                "or pick another task in the sidebar.")
        st.stop()
    try:
        return _pipeline(*selection.model_key, selection.threshold, detector, selection.crops, selection.class_bias)
    except ModelError as exc:
        show_error(f"The model cannot be used: {exc}")
        st.stop()


@st.cache_resource(show_spinner="Preparing the heat maps…", max_entries=6)
def _explainer(path: str, mtime: float, crops: bool = True) -> Explainer:
    return Explainer(load_classifier(path, mtime, crops))


def get_explainer(selection: Selection) -> Explainer | None:
    """Heat maps for the sidebar's model (shared by all sessions); None, with the reason shown, if it has none."""
    try:
        return _explainer(*selection.model_key, selection.crops) if selection.model_path else None
    except (ModelError, ValueError) as exc:
        show_error(f"This model's labels cannot be explained: {exc}")
        return None


WHY_SIDE = 192                   # crops and heat maps are shown this many pixels wide
METHOD_TITLES = {"grad-cam": "Grad-CAM", "occlusion": "Occlusion"}


def show_why(found: list[FaceExplanation], faces: list[Face], key: str) -> None:
    """Per face: the crop the model saw (enlarged), its heat maps and the probability of every class."""
    if found:
        st.caption("Red: where the evidence for the label lies. Grad-CAM reads the network's last convolutional "
                   "block; occlusion hides each part of the face in turn and measures what the label loses. "
                   "The mouth is the lower third of the crop.")
    for i, (fe, face) in enumerate(zip(found, faces)):
        with st.container(key=f"{key}-{i + 1}", border=True):
            st.markdown(f"**Face {i + 1}: {face.label}** ({face.score:.0%})")
            cols = st.columns([1] * (1 + len(fe.maps)) + [1.4])
            size = fe.crop.shape[0]
            cols[0].image(enlarge(fe.crop, WHY_SIDE), caption=f"What the model saw ({size}x{size})")
            for col, (method, e) in zip(cols[1:], fe.maps.items()):
                share = e.mouth_share
                where = "no evidence" if share is None else f"{share:.0%} on the mouth"
                col.image(overlay(fe.crop, e.heat, WHY_SIDE), caption=f"{METHOD_TITLES[method]} · {where}")
            with cols[-1]:
                for name, p in zip(face.task.display_names, face.probs):
                    st.progress(float(p), text=f"{name}: {p:.1%}")


def show_error(message: str | Exception) -> None:
    """A clear, short error for bad input (not a traceback)."""
    st.error(str(message), icon=":material/error:")


def confusion_figure(cm, class_names, title: str = "", normalize: bool = True):
    """A plotly heat map of a confusion matrix (rows: true class, columns: predicted)."""
    import plotly.graph_objects as go

    cm = np.asarray(cm, dtype=float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    text = [[f"{int(n)}<br>{s:.0%}" if normalize else f"{int(n)}" for n, s in zip(r1, r2)] for r1, r2 in zip(cm, shown)]
    fig = go.Figure(go.Heatmap(z=shown, x=list(class_names), y=list(class_names), text=text,
                               texttemplate="%{text}", colorscale="Blues", showscale=False,
                               hovertemplate="true %{y}<br>predicted %{x}<extra></extra>"))
    fig.update_layout(title=title or None, xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed", margin=dict(l=10, r=10, t=40 if title else 10, b=10), height=360)
    return fig
