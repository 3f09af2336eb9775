"""Home: what Grin does, and one click to try it."""
import streamlit as st

from core.registry import list_models
from core.tasks import TASKS
from pages.common import sidebar

sidebar()
st.title("Grin")
st.markdown("Smile and facial-expression recognition that runs in your browser. Grin finds every face "
            "in a picture, a video or your webcam and says whether it smiles — or which of seven "
            "expressions it shows — with a probability for each.")

left, right = st.columns(2)
with left.container(border=True):
    st.subheader(":material/videocam: Live webcam")
    st.write("Labels follow each face as you move. Hold a smile for a second and the smile shutter "
             "takes a picture.")
    st.page_link("pages/webcam.py", label="Open the webcam", icon=":material/arrow_forward:")
with right.container(border=True):
    st.subheader(":material/upload: Your pictures and videos")
    st.write("Drop several photos at once, or one video: get them back annotated, with a table of "
             "faces (CSV) or a smile timeline.")
    st.page_link("pages/upload.py", label="Upload files", icon=":material/arrow_forward:")

st.subheader("Models in use")
rows = []
for task in TASKS.values():
    found = list_models(task.name)
    acc = [e.meta.metrics.get("test_accuracy") for e in found]
    best = max((a for a in acc if a is not None), default=None)
    rows.append({"task": task.title, "classes": ", ".join(task.display_names), "models": len(found),
                 "best test accuracy": f"{best:.2%}" if best is not None else "—"})
st.dataframe(rows, hide_index=True)
st.caption("Pick the task, the model and its decision rule (the smile threshold, the neutral offset) in the sidebar; "
           "they apply to every page. "
           "Train your own models on the Training page. Pictures and video go only to the Grin server "
           "this page comes from, and are not stored.")
