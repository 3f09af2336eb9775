"""Models: every model the app can use (bundled, trained here, pulled from the Hub), and sharing via the Hub."""
import plotly.graph_objects as go
import streamlit as st

from bench.generalisation import MIN_N_WORST, RESULT_FILE, comparison, load_result
from core.decision import own_offsets
from core.registry import list_models
from training import hub
from training.card_data import curve_rows
from training.curves_png import learning_curves_png
from pages.common import show_error, sidebar

SOURCES = {"bundled": "bundled with Grin", "run": "trained here", "hub": "pulled from the Hub"}


@st.cache_data(ttl=60, show_spinner=False)
def hub_status() -> hub.HubStatus:
    """Checked when this page opens (2 s at most, then cached a minute), never at start-up."""
    return hub.hub_status(timeout=2.0)


def model_rows(entries) -> list[dict]:
    rows = []
    for e in entries:
        m, origin = e.meta.metrics, hub.provenance(e.path)
        rows.append({"model": e.name, "task": e.task, "source": SOURCES.get(e.source, e.source),
                     "test accuracy": m.get("test_accuracy"), "balanced accuracy": m.get("test_balanced_accuracy"),
                     "validation accuracy": m.get("val_accuracy"),
                     "validation faces": "trained on (--fit-val)" if m.get("fit_val") else "held out",
                     "architecture": e.meta.arch,
                     "parameters": e.meta.extra.get("n_params"), "created": e.meta.created,
                     "Hub commit": f"{origin['repo_id']}@{origin['commit'][:8]}" if origin else ""})
    return rows


def details(entries) -> None:
    names = {str(e.path): f"{e.name} ({SOURCES.get(e.source, e.source)})" for e in entries}
    chosen = st.selectbox("Details of", list(names), format_func=names.get)
    entry = next(e for e in entries if str(e.path) == chosen)
    left, right = st.columns([3, 2])
    rows, whose = curve_rows(entry.path)
    if rows:
        left.image(learning_curves_png(rows), caption="Loss and accuracy per epoch (training and validation)" + (
            f" of {whose}" if whose else "") + (
            "; the validation faces were part of this model's training (--fit-val)"
            if entry.meta.metrics.get("fit_val") else ""))
    else:
        left.caption("No learning curves saved with this model.")
    right.markdown(f"**Command**\n\n`{entry.meta.command or 'unknown'}`")
    names = entry.meta.class_names
    rule = ({"threshold": entry.meta.threshold} if len(names) == 2 else
            {"class offsets": dict(zip(names, own_offsets(entry.meta.class_bias, len(names))))})
    right.json({"metrics": entry.meta.metrics, **rule,
                "preprocess": entry.meta.preprocess, "folder": str(entry.path)}, expanded=False)


def generalisation_section(entries) -> None:
    """The generalisation suite's figures of the chosen models of one task, side by side."""
    st.subheader("Faces it never trained on")
    st.caption("Balanced accuracy per check of `python -m bench.generalisation`: held-out splits, the same faces "
               "cropped tightly or loosely, small, compressed, dark or flat, and collections the model never saw. "
               f"The worst case counts checks of at least {MIN_N_WORST} faces.")
    results = {e.name: r for e in entries if (r := load_result(e.path))}
    if not results:
        st.info(f"No model has suite figures yet: `python -m bench.generalisation --model <folder> "
                f"--json <folder>/{RESULT_FILE}` writes them.")
        return
    task = st.radio("Task", sorted({r["task"] for r in results.values()}), horizontal=True, key="gen.task")
    names = [n for n, r in results.items() if r["task"] == task]
    chosen = st.multiselect("Models", names, default=names[:2], key="gen.models")
    if not chosen:
        return
    picked = {n: results[n] for n in chosen}
    rows = comparison(picked)
    st.dataframe(rows, hide_index=True, column_config={
        n: st.column_config.NumberColumn(format="percent") for n in chosen})
    for n, r in picked.items():
        if r.get("worst_check"):
            st.markdown(f"**{n}**: worst balanced accuracy **{r['worst_balanced_accuracy']:.1%}** "
                        f"({r['worst_check']})")
    fig = go.Figure([go.Bar(name=n, x=[row["check"] for row in rows], y=[row.get(n) for row in rows])
                     for n in chosen])
    fig.update_layout(barmode="group", yaxis=dict(title="balanced accuracy", range=[0, 1], tickformat=".0%"),
                      height=420, margin=dict(t=20, b=10), legend=dict(orientation="h"))
    st.plotly_chart(fig, width="stretch", key="gen.chart")


def pull_form(token) -> None:
    with st.form("hub.pull"):
        repo = st.text_input("Repository", placeholder="owner/name")
        revision = st.text_input("Revision", placeholder="main", help="A branch, a tag or a commit hash.")
        task = st.selectbox("Task", ["any", "smile", "expression"], help="Refuse models of another task.")
        go = st.form_submit_button("Pull", icon=":material/download:")
    if go:
        with st.spinner(f"Pulling {repo} and checking it…"):
            try:
                r = hub.pull(repo, revision or None, task=None if task == "any" else task, token=token)
            except hub.HubError as exc:
                show_error(exc)
                return
        st.session_state["hub.notice"] = (f"Pulled {r.repo_id}@{r.revision} (commit {r.commit[:10]}), a "
                                          f"{r.meta.task} model, served by {r.served_by}: choose it in the sidebar's model "
                                          "picker.")
        st.rerun()


def push_form(token) -> None:
    runs = [e for e in list_models() if e.source == "run"]
    if not runs:
        st.info("No finished run with a model yet: train one on the Training page, then push it from here.")
        return
    names = {str(e.path): f"{e.name} ({e.task})" for e in runs}
    with st.form("hub.push"):
        path = st.selectbox("Run", list(names), format_func=names.get)
        repo = st.text_input("Repository", placeholder="your-name/grin-smile",
                             help="Created if it does not exist yet.")
        private = st.checkbox("Private repository", value=True)
        go = st.form_submit_button("Push", icon=":material/upload:")
    if not go:
        return
    if token is False:
        show_error("Enter a Hugging Face token with write access above: this hosted app never pushes with "
                   "its own credentials.")
        return
    with st.spinner(f"Pushing to {repo}…"):
        try:
            r = hub.push(path, repo, token=token, private=private)
        except hub.HubError as exc:
            show_error(exc)
            return
    st.success(f"Pushed {len(r.files)} files to {r.url} (commit {r.commit[:10]}).", icon=":material/cloud_done:")


sidebar()
st.title("Models")
if notice := st.session_state.pop("hub.notice", None):
    st.success(notice, icon=":material/cloud_done:")
status = hub_status()
if status.reachable:
    st.caption(f":material/cloud: {status.message}.")
else:
    st.warning(status.message, icon=":material/cloud_off:")

entries = list_models()
st.dataframe(model_rows(entries), hide_index=True, column_config={
    "test accuracy": st.column_config.NumberColumn(format="percent"),
    "balanced accuracy": st.column_config.NumberColumn(format="percent"),
    "validation accuracy": st.column_config.NumberColumn(
        format="percent", help="None where the validation faces were part of the training (--fit-val)"),
    "parameters": st.column_config.NumberColumn(format="localized")})
if entries:
    details(entries)
    generalisation_section(entries)

st.subheader("Hugging Face Hub")
st.text_input("Access token", type="password", key="hub.token",
              help="Kept for this browser session only: never saved, never logged. Needed to push, and to pull "
                   "private models. Running locally, HF_TOKEN or `hf auth login` is used when this is empty.")
token = hub.effective_token(st.session_state.get("hub.token"))
pull_tab, push_tab = st.tabs(["Pull a model", "Push a run"])
with pull_tab:
    pull_form(token)
with push_tab:
    push_form(token)
