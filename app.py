"""Grin: smile and facial-expression recognition in the browser. Run: streamlit run app.py"""
from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent

# (file, title, icon, url path); pages written later appear once their file exists.
SECTIONS = {
    "Try": [("pages/home.py", "Home", ":material/sentiment_satisfied:", "home"),
            ("pages/webcam.py", "Webcam", ":material/videocam:", "webcam"),
            ("pages/upload.py", "Upload", ":material/upload:", "upload")],
    "Build": [("pages/explorer.py", "Dataset explorer", ":material/dataset:", "explorer"),
              ("pages/training.py", "Training", ":material/model_training:", "training"),
              ("pages/models.py", "Models", ":material/inventory_2:", "models")],
}


def _warm_up() -> None:
    """Import TensorFlow and Keras (seconds) while the user reads the first page."""
    import time

    from core.runtime import tensorflow

    time.sleep(0.5)  # let the first page reach the browser before the import competes for the CPU
    tensorflow()
    import keras

    # Streamlit calls keras.backend.clear_session() after every script run, fragment reruns too (the
    # webcam page refreshes its figures each second). In Keras 3 that resets global state and runs a
    # full gc.collect() with the GIL held, stalling the frame callback for hundreds of milliseconds.
    # This server builds its models once and shares them, so it never needs that reset.
    keras.backend.clear_session = lambda *args, **kwargs: None


@st.cache_resource(show_spinner=False)
def start_warm_up() -> threading.Thread:
    thread = threading.Thread(target=_warm_up, name="grin-warm-up", daemon=True)
    thread.start()
    return thread


st.set_page_config(page_title="Grin", page_icon=":material/sentiment_satisfied:", layout="wide")
pages = {section: [st.Page(file, title=title, icon=icon, url_path=url, default=(url == "home"))
                   for file, title, icon, url in entries if (ROOT / file).is_file()]
         for section, entries in SECTIONS.items()}
current = st.navigation({s: p for s, p in pages.items() if p})
current.run()
start_warm_up()  # after the page: its content is already on its way to the browser
