"""Training: set up a run, start it in its own process, watch it learn live, stop it, compare runs,
and make a finished run the app's model."""
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.export import ensure_export
from core.model import ModelError
from core.preprocess import EQUALIZE, MAX_DEBLOCK, MAX_INPUT
from core.registry import default_model, list_models, runs_root, set_default_model
from core.tasks import get_task
from training import launcher
from training.config import (CLASS_WEIGHTS, JPEG_SCALE_MIN, OPTIMIZERS, SCHEDULES, Augment, ConfigError,
                             TrainConfig)
from training.runs import Run
from training.sources import default_data_path, missing_message
from pages.common import choose_model, confusion_figure, show_error, sidebar

POLL_S = 1.0                  # how often a live run's panel refreshes
D, A = TrainConfig(), Augment()


def architectures(task: str) -> list[str]:
    from core.runtime import tensorflow, tensorflow_loaded

    # Keras below needs TensorFlow: imported once, under the app's lock (never in two threads at once). The app
    # imports it only where it is needed (here, heat maps, the Hub), so a first visit waits for it.
    with st.spinner("Loading TensorFlow (a few seconds, once)…") if not tensorflow_loaded() else nullcontext():
        tensorflow()
    from training.architectures import ARCHITECTURES
    from training.baselines import BASELINES

    default = get_task(task).default_arch
    return [default] + [a for a in (*ARCHITECTURES, *BASELINES) if a != default]


def settings_form(task: str) -> tuple[TrainConfig, str] | None:
    """The run's settings and name, once Start is pressed."""
    data = st.text_input("Dataset folder (or fer2013.csv)", value=default_data_path(task), key=f"train.data.{task}")
    if data.strip() and not Path(data.strip()).expanduser().exists():
        st.warning(missing_message(task, data.strip()), icon=":material/folder_off:")
    with st.form("train.settings", border=True):
        c = st.columns(4)
        arch = c[0].selectbox("Architecture", architectures(task), key=f"train.arch.{task}",
                              help="compact / expression / baseline are CNNs; hog_svm, hog_logreg and mlp are "
                                   "classical baselines (for comparison; the app serves CNNs)")
        epochs = c[1].number_input("Epochs", 0, 1000, D.epochs, key="train.epochs")
        batch = c[2].number_input("Batch size", 0, 4096, D.batch_size, key="train.batch")
        limit = c[3].number_input("Subset limit (0: all)", 0, None, 0, step=100, key="train.limit",
                                  help="Train on at most this many images, for a quick run")
        c = st.columns(4)
        optimizer = c[0].selectbox("Optimizer", OPTIMIZERS, key="train.optimizer")
        lr = c[1].number_input("Learning rate", 0.0, 10.0, D.lr, step=1e-4, format="%.5f", key="train.lr")
        schedule = c[2].selectbox("Schedule", SCHEDULES, key="train.schedule")
        warmup = c[3].number_input("Warm-up epochs", 0, 100, D.warmup_epochs, key="train.warmup")
        c = st.columns(5)
        weight_decay = c[0].number_input("Weight decay", 0.0, 1.0, D.weight_decay, step=1e-4, format="%.5f",
                                         key="train.wd")
        l2 = c[1].number_input("L2", 0.0, 1.0, D.l2, step=1e-4, format="%.5f", key="train.l2")
        dropout = c[2].number_input("Dropout", 0.0, 1.0, D.dropout, step=0.05, key="train.dropout")
        smoothing = c[3].number_input("Label smoothing", 0.0, 1.0, D.label_smoothing, step=0.01,
                                      key="train.smoothing")
        weights = c[4].selectbox("Class weights", CLASS_WEIGHTS, key="train.class_weights")
        with st.expander("Augmentation"):
            c = st.columns(4)
            flip = c[0].checkbox("Horizontal flip", A.flip, key="train.flip")
            shift = c[1].slider("Shift (fraction)", 0.0, 0.4, A.shift, 0.01, key="train.shift")
            rotate = c[2].slider("Rotation (degrees)", 0.0, 45.0, A.rotate, 1.0, key="train.rotate")
            zoom = c[3].slider("Zoom", 0.0, 0.5, A.zoom, 0.01, key="train.zoom")
            c = st.columns(4)
            light = c[0].slider("Brightness / contrast", 0.0, 1.0, A.brightness_contrast, 0.05, key="train.light")
            blur = c[1].slider("Blur probability", 0.0, 1.0, A.blur, 0.05, key="train.blur")
            erasing = c[2].slider("Random erasing probability", 0.0, 1.0, A.erasing, 0.05, key="train.erasing")
            mixup = c[3].slider("Mixup alpha", 0.0, 1.0, A.mixup, 0.05, key="train.mixup")
            loose = c[0].slider("Looser framing probability", 0.0, 1.0, A.loose, 0.05, key="train.loose",
                                help="Show photos' faces framed up to 1.8x more loosely, cut from the real photo "
                                     "around them (already-cropped faces keep their framing)")
            equalize = c[1].selectbox("Contrast normalisation", ["", *EQUALIZE], key="train.equalize",
                                      format_func=lambda v: v or "the start model's (none for new weights)",
                                      help="clahe: contrast-limited adaptive histogram equalisation of every face "
                                           "crop, in training and in use (it is saved with the model)")
            c = st.columns(4)
            tight = c[0].slider("Tighter framing probability", 0.0, 1.0, A.tight, 0.05, key="train.tight",
                                help="Show faces framed down to the eyes-to-chin area, as close-up and "
                                     "LFW-style crops are")
            jpeg = c[1].slider("JPEG compression probability", 0.0, 1.0, A.jpeg, 0.05, key="train.jpeg",
                               help="Compress faces hard (quality 10-50), as webcams and messaging apps do")
            jpeg_scale = c[2].slider("Compress at down to this scale", JPEG_SCALE_MIN, 1.0, A.jpeg_scale, 0.05,
                                     key="train.jpeg_scale",
                                     help="Compress each face at a random scale from this fraction of its side "
                                          "to 1, as a smaller source picture is compressed before it is enlarged")
            deblock = c[3].slider("Deblocking blur (px, 0: off)", 0.0, MAX_DEBLOCK, A.deblock, 0.1,
                                  key="train.deblock",
                                  help="Blur the compressed faces whose JPEG block grid shows, and serve the "
                                       "model with the same gated blur (needs JPEG compression above 0)")
        with st.expander("Weight averaging (SWA)"):
            c = st.columns(2)
            swa_epochs = c[0].number_input("Average the last N epochs (0: off)", 0, 1000, D.swa_epochs,
                                           key="train.swa_epochs",
                                           help="The run's model becomes the mean of these epochs' weights "
                                                "when that scores better on validation than the best epoch")
            swa_lr = c[1].number_input("Their learning rate (0: follow the schedule)", 0.0, 1.0, D.swa_lr,
                                       step=1e-4, format="%.5f", key="train.swa_lr")
        models = {str(e.path): f"{e.label} · {e.task} task, {e.meta.arch} network" for e in list_models()}
        start_from = st.selectbox("Start from", ["", *models], key="train.init",
                                  format_func=lambda p: models.get(p, "new weights"),
                                  help="Fine-tune a model of this task, or transfer one of another task "
                                       "(its output layer starts fresh). The architecture must be the "
                                       "model's; its width is taken from it.")
        c = st.columns(4)
        seed = c[0].number_input("Seed", 0, 2**31 - 1, D.seed, key="train.seed",
                                 help="Initial weights, shuffling and augmentation. The train/validation/test "
                                      f"split stays the same (seed {D.split_seed}), so runs can be compared.")
        patience = c[1].number_input("Early stopping patience (0: off)", 0, 1000, D.patience, key="train.patience")
        input_size = c[2].number_input("Face size in pixels (0: the task's)", 0, MAX_INPUT, 0, step=8,
                                       key="train.input_size",
                                       help=f"The side of the face crops the network sees (this task: "
                                            f"{get_task(task).input_size}). Larger sees more detail and costs "
                                            "more time; with 'Start from', 0 keeps that model's.")
        name = c[3].text_input("Run name (optional)", key="train.name")
        if not st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:"):
            return None
    return TrainConfig(task=task, data=data.strip(), arch=arch, epochs=int(epochs), batch_size=int(batch),
                       optimizer=optimizer, lr=float(lr), schedule=schedule, warmup_epochs=int(warmup),
                       weight_decay=float(weight_decay), l2=float(l2), dropout=float(dropout),
                       label_smoothing=float(smoothing), class_weights=weights, seed=int(seed),
                       limit=int(limit), patience=int(patience), swa_epochs=int(swa_epochs), swa_lr=float(swa_lr),
                       init=start_from, input_size=int(input_size), equalize=equalize,
                       augment=Augment(flip=flip, shift=shift, rotate=rotate, zoom=zoom, brightness_contrast=light,
                                       blur=blur, erasing=erasing, mixup=mixup, loose=loose, tight=tight,
                                       jpeg=jpeg, jpeg_scale=jpeg_scale, deblock=deblock)), name


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def curves_figure(metrics: list[dict]):
    """Loss and accuracy per epoch, training and validation."""
    df = pd.DataFrame(metrics)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, name, dash in (("", "train", "solid"), ("val_", "validation", "dot")):
            fig.add_trace(go.Scatter(x=df["epoch"].tolist(), y=df[prefix + metric].tolist(), name=f"{name} {metric}",
                                     mode="lines+markers", line=dict(dash=dash)), row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def run_panel(path: str, live: bool) -> None:
    """One run: progress, curves, validation confusion, results and its actions (refreshes while live)."""
    run = Run(Path(path))
    p = launcher.progress(run)
    if live and not p.active:
        st.rerun()  # it just ended: refresh the whole page (runs table, model picker), stop polling
    task = get_task(run.config().get("config", {}).get("task", "smile"))
    if p.state == "queued":
        st.info(f"Queued: position {p.queue_position or '?'} — it starts when a training slot frees "
                f"(at most {launcher.max_runs()} at once).", icon=":material/hourglass_top:")
    label = f"Epoch {p.epoch}/{p.epochs}"
    if p.active:
        label += f" · ETA {duration(p.eta_s)}" if p.epoch else ""
        st.progress(p.fraction, text=f"{label} · {p.state}: {p.message}")
    else:
        said = p.message and p.message != p.state   # not "finished: finished"
        st.progress(p.fraction, text=f"{label} · {p.state}" + (f": {p.message}" if said else ""))
    buttons = st.columns(4)
    if p.active and buttons[0].button("Stop", icon=":material/stop:", key=f"stop.{run.name}"):
        launcher.stop(run)
        st.toast("Stopping at the end of the current batch…")
    metrics = run.metrics()
    if metrics:
        left, right = st.columns([3, 2])
        left.plotly_chart(curves_figure(metrics), width="stretch", key=f"curves.{run.name}")
        last = metrics[-1]
        seen = " (trained on)" if last.get("val_in_training") else ""
        if seen:
            left.caption("A final model (`--fit-val`): the validation faces are part of its training, so its "
                         "validation curve is not a held-out figure; the last epoch is kept.")
        if last.get("val_confusion"):
            right.plotly_chart(confusion_figure(last["val_confusion"], task.display_names,
                                                f"Validation{seen}, epoch {last['epoch']}"),
                               width="stretch", key=f"confusion.{run.name}")
    if p.active:
        return
    ev = run.evaluation()
    if ev:
        c = st.columns(4)
        c[0].metric("Test accuracy", f"{ev['accuracy']:.2%}")
        c[1].metric("Balanced accuracy", f"{ev['balanced_accuracy']:.2%}")
        c[2].metric("Test images", ev.get("n_images", 0))
        if ev.get("train_seconds") is not None:
            c[3].metric("Training time", duration(ev["train_seconds"]))
    if p.state in ("failed", "interrupted"):
        show_error(f"The run {p.state}: {p.message or 'see its log'}")
        with st.expander("Log"):
            st.code(launcher.log_tail(run) or "(empty)", language=None)
    actions(run, task, buttons)


def actions(run: Run, task, buttons) -> None:
    """Use a finished run as the app's model; resume an interrupted one."""
    if run.has_model() and run.status().get("state") in ("finished", "stopped"):
        if default_model(task.name).resolve() == run.path.resolve():
            buttons[0].success(f"The app's {task.title.lower()} model", icon=":material/check_circle:")
        elif buttons[0].button("Use as the app's model", type="primary", icon=":material/check_circle:",
                               key=f"use.{run.name}"):
            with st.spinner("Exporting it for ONNX Runtime, which serves it faster than Keras…"):
                slow = ensure_export(run.path)   # before it is served, so that the export serves it
            try:
                set_default_model(task.name, run.path)
            except ModelError as exc:
                show_error(exc)
                return
            choose_model(task.name, run.path)
            st.session_state["train.flash"] = f"{run.name} is now the app's {task.title.lower()} model." + (
                f" Keras serves it (slower): its ONNX export failed ({slow})." if slow else "")
            st.rerun()
    metrics = run.metrics()
    unfinished = not metrics or metrics[-1]["epoch"] < metrics[-1]["epochs"]
    if unfinished and run.status().get("state") in ("stopped", "interrupted", "failed") and run.file(
            "checkpoint.keras").is_file():
        if buttons[1].button("Resume", icon=":material/resume:", key=f"resume.{run.name}"):
            try:
                launcher.resume(run)
            except ConfigError as exc:
                show_error(exc)
                return
            st.rerun()


def compare_section(runs: list[Run]) -> None:
    with_metrics = [r for r in runs if r.metrics()]
    if not with_metrics:
        return
    names = [r.name for r in with_metrics]
    picked = st.multiselect("Compare runs", names, default=names[:4], key="train.compare")
    rows = [dict(m, run=r.name) for r in with_metrics if r.name in picked for m in r.metrics()]
    if rows:
        fig = px.line(pd.DataFrame(rows), x="epoch", y="val_accuracy", color="run", markers=True,
                      labels={"val_accuracy": "validation accuracy"})
        fig.update_xaxes(dtick=1)
        fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10))
        st.plotly_chart(fig, width="stretch")


sel = sidebar()
st.title("Training")
if "train.flash" in st.session_state:
    st.success(st.session_state.pop("train.flash"), icon=":material/check_circle:")
task = sel.task.name   # one task control for every page: the sidebar's
st.caption(f"New runs train a {sel.task.title.lower()} model: the task chosen in the sidebar.")
runs = launcher.runs()
with st.expander("New run", expanded=not runs or "train.run" not in st.session_state,
                 icon=":material/tune:"):
    submitted = settings_form(task)
    if submitted:
        cfg, name = submitted
        try:
            started = launcher.start(cfg, name=name)
        except ConfigError as exc:
            show_error(f"Not started: {exc}")
        else:
            st.session_state["train.run"] = started.name
            st.rerun()

runs = launcher.runs()
if runs:
    st.subheader("Run")
    names = [r.name for r in runs]
    current = st.session_state.get("train.run")
    chosen = st.selectbox("Run", names, index=names.index(current) if current in names else 0,
                          label_visibility="collapsed")
    st.session_state["train.run"] = chosen
    run = next(r for r in runs if r.name == chosen)
    live = launcher.progress(run).active
    st.fragment(run_every=POLL_S if live else None)(run_panel)(str(run.path), live)

    st.subheader("All runs")
    st.dataframe(pd.DataFrame([launcher.summary(r) for r in runs]), hide_index=True, width="stretch",
                 column_config={"train acc": st.column_config.NumberColumn(format="percent"),
                                "best val acc": st.column_config.NumberColumn(format="percent"),
                                "test acc": st.column_config.NumberColumn(format="percent"),
                                "test bal. acc": st.column_config.NumberColumn(format="percent")})
    st.caption(f"Runs are kept in `{runs_root()}`.")
    compare_section(runs)
else:
    st.caption(f"No runs yet in `{runs_root()}`.")
