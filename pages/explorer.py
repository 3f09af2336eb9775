"""Dataset explorer: class balance, samples, image sizes, head pose, missed faces, the model's mistakes."""
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core.model import ModelError
from training import explore
from training.datasets import DatasetError
from training.sources import default_data_path, missing_message
from pages.common import METHOD_TITLES, Selection, confusion_figure, get_explainer, model_mtime, show_error, sidebar

GRID_COLUMNS = 8


@st.cache_resource(show_spinner="Reading the dataset and finding its faces (slow the first time only)…",
                   max_entries=4)
def load_view(root: str, task: str, split: tuple) -> explore.DatasetView:
    return explore.load_view(root, task, explore.SplitConfig(*split))


@st.cache_data(show_spinner="Running the model on the test split (once per model)…", max_entries=16)
def model_mistakes(root: str, task: str, split: tuple, model: str, mtime: float,
                   threshold: float | None, class_bias: tuple | None = None) -> explore.Mistakes:
    return explore.model_mistakes(load_view(root, task, split), model, threshold, class_bias)


def image_grid(view: explore.DatasetView, rows: pd.DataFrame, captions: list[str], crops: bool,
               images: list | None = None) -> None:
    """Samples as a grid of thumbnails (the original images, the crops the model sees, or `images`)."""
    cols = st.columns(GRID_COLUMNS)
    for k, (i, caption) in enumerate(zip(rows["index"], captions)):
        image = images[k] if images is not None else explore.crop_image(view, i) if crops else explore.thumbnail(view, i)
        cols[k % GRID_COLUMNS].image(image, caption=caption, width="stretch")


@st.cache_data(show_spinner="Finding what the model looked at…", max_entries=16)
def mistake_heatmaps(root: str, task: str, split: tuple, model: str, mtime: float, threshold: float | None,
                     class_bias: tuple | None, method: str, n: int, _sel: Selection) -> list:
    m = model_mistakes(root, task, split, model, mtime, threshold, class_bias)
    explainer = get_explainer(_sel)
    return explore.mistake_heatmaps(load_view(root, task, split), explainer, m.rows.head(n), method) if explainer else None


def balance_section(view: explore.DatasetView) -> None:
    st.subheader("Class balance per split")
    df = explore.class_balance(view)
    task = view.dataset.task
    colors = {n: "rgb({},{},{})".format(*c) for n, c in zip(task.display_names, task.colors)}
    fig = px.bar(df, x="split", y="count", color="class", barmode="group", text="count",
                 color_discrete_map=colors, hover_data={"share": ":.1%"})
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=10, b=10))
    left, right = st.columns([3, 2])
    left.plotly_chart(fig, width="stretch")
    right.dataframe(df.pivot(index="class", columns="split", values="count")[df["split"].unique()],
                    width="stretch")
    right.caption(f"{explore.split_description(view)} The selected model's split.")


def samples_section(view: explore.DatasetView) -> None:
    st.subheader("Samples")
    t = view.table
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    classes = c1.multiselect("Class", list(view.dataset.task.display_names), key="explorer.classes")
    splits = c2.multiselect("Split", sorted(t["split"].unique()), key="explorer.splits")
    per_class = c3.number_input("Per class", 4, 64, 16, step=4, key="explorer.per_class")
    crops = c4.toggle("Face crops", key="explorer.crops", help="Show the crops the model sees, not the photos")
    pose = {}
    if view.has_pose:
        cols = st.columns(3)
        for col, angle in zip(cols, explore.POSE):
            lo, hi = np.degrees(t[angle].min()), np.degrees(t[angle].max())
            lo, hi = float(np.floor(lo)), float(np.ceil(hi))
            chosen = col.slider(f"{angle} (degrees)", lo, hi, (lo, hi), key=f"explorer.{angle}")
            if chosen != (lo, hi):
                pose[angle] = (np.radians(chosen[0]), np.radians(chosen[1]))
    found = explore.filter_samples(view, classes, splits, pose)
    if st.button("Show others", key="explorer.reshuffle"):
        st.session_state["explorer.seed"] = st.session_state.get("explorer.seed", 0) + 1
    seed = st.session_state.get("explorer.seed", 0)
    st.caption(f"{len(found)} of {len(t)} images match.")
    for name in classes or view.dataset.task.display_names:
        rows = found[found["class"] == name]
        if len(rows) == 0:
            continue
        st.markdown(f"**{name}** ({len(rows)})")
        shown = rows.sample(min(int(per_class), len(rows)), random_state=seed)
        image_grid(view, shown, [f"{n} · {s}" for n, s in zip(shown["name"], shown["split"])], crops)


def sizes_section(view: explore.DatasetView) -> None:
    st.subheader("Image sizes")
    left, mid, right = st.columns([2, 2, 3])
    left.dataframe(explore.size_summary(view), width="stretch")
    mid.dataframe(explore.common_sizes(view), width="stretch", hide_index=True)
    fig = px.scatter(view.table[view.table["readable"]], x="width", y="height", color="class", opacity=0.5,
                     hover_data=["name"])
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10))
    right.plotly_chart(fig, width="stretch")


def pose_section(view: explore.DatasetView) -> None:
    st.subheader("Head pose")
    df = view.table.melt(id_vars=["class"], value_vars=list(explore.POSE), var_name="angle", value_name="radians")
    df["degrees"] = np.degrees(df["radians"])
    fig = px.histogram(df, x="degrees", color="class", facet_col="angle", nbins=40, barmode="overlay", opacity=0.6)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, width="stretch")
    st.caption("Yaw, pitch and roll as labelled in GENKI-4K's labels.txt.")


def missed_section(view: explore.DatasetView) -> None:
    st.subheader("Faces the detector missed")
    s = explore.detection_summary(view)
    if s["detection used"] == 0:
        st.info("Face detection is not used for this dataset: its images are already face crops.")
        return
    cols = st.columns(4)
    for col, k in zip(cols, ("detection used", "faces found", "faces missed", "unreadable")):
        col.metric(k.capitalize(), s[k])
    missed = explore.missed_faces(view)
    if len(missed):
        st.caption("For these images the whole picture was used as the face (training and evaluation).")
        shown = missed.head(2 * GRID_COLUMNS)
        image_grid(view, shown, [f"{n} · {c}" for n, c in zip(shown["name"], shown["class"])], crops=False)
        if len(missed) > len(shown):
            st.dataframe(missed[["name", "class", "split", "width", "height"]], hide_index=True, height=200)


def mistakes_section(view: explore.DatasetView, root: str, sel: Selection) -> None:
    st.subheader("The model's mistakes on the test split")
    if sel.model_path is None:
        st.info("No model for this task yet: train one on the Training page.")
        return
    split = view.split
    try:
        m = model_mistakes(root, sel.task.name, (split.val_fraction, split.test_fraction, split.seed),
                           str(sel.model_path), model_mtime(sel.model_path), sel.threshold, sel.class_bias)
    except (ModelError, ValueError) as exc:
        show_error(f"The model cannot be evaluated here: {exc}")
        return
    left, right = st.columns([2, 3])
    with left:
        c1, c2, c3 = st.columns(3)
        c1.metric("Test images", m.n)
        c2.metric("Accuracy", f"{m.accuracy:.2%}")
        c3.metric("Balanced", f"{m.balanced_accuracy:.2%}")
        st.plotly_chart(confusion_figure(m.confusion, m.class_names, "Confusion matrix (test split)"),
                        width="stretch")
    with right:
        st.caption(f"{len(m.rows)} mistakes, most confident first (model {Path(sel.model_path).name})")
        if len(m.rows):
            shown = m.rows.head(3 * GRID_COLUMNS)
            method = st.segmented_control("Heat maps", ["none", *METHOD_TITLES], default="occlusion",
                                          format_func=lambda k: METHOD_TITLES.get(k, "None"),
                                          key="explorer.mistake_heat",
                                          help="Over each crop, where the evidence for the wrong label lies")
            heat = None
            if method in METHOD_TITLES:
                key = (split.val_fraction, split.test_fraction, split.seed)
                heat = mistake_heatmaps(root, sel.task.name, key, str(sel.model_path), model_mtime(sel.model_path),
                                        sel.threshold, sel.class_bias, method, len(shown), sel)
            image_grid(view, shown, [f"{t} → {p} ({c:.0%})" for t, p, c in
                                     zip(shown["true"], shown["predicted"], shown["confidence"])], crops=True,
                       images=heat)
    if len(m.rows):
        st.dataframe(m.rows, hide_index=True, height=240, width="stretch")


sel = sidebar()
st.title("Dataset explorer")
root = st.text_input("Dataset folder (or fer2013.csv)", value=default_data_path(sel.task.name),
                     key=f"explorer.data.{sel.task.name}")
if not root.strip() or not Path(root).expanduser().exists():
    st.warning(missing_message(sel.task.name, root.strip()), icon=":material/folder_off:")
    st.stop()
root = str(Path(root).expanduser().resolve())
split_cfg = explore.split_config_for(sel.model_path)
try:
    view = load_view(root, sel.task.name, (split_cfg.val_fraction, split_cfg.test_fraction, split_cfg.seed))
except DatasetError as exc:
    show_error(f"This dataset cannot be read for the {sel.task.title.lower()} task: {exc}")
    st.stop()
ds = view.dataset
st.caption(f"{ds.name} · {len(ds.samples)} images · {ds.task.title} task"
           + (f" · classes left out: {', '.join(f'{k} ({v})' for k, v in ds.skipped.items())}" if ds.skipped else ""))
balance_section(view)
samples_section(view)
sizes_section(view)
if view.has_pose:
    pose_section(view)
missed_section(view)
mistakes_section(view, root, sel)
