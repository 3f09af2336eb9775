"""Grin: smile and facial-expression recognition in the browser. Run: streamlit run app.py"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.runtime import keep_keras_session

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


st.set_page_config(page_title="Grin", page_icon=":material/sentiment_satisfied:", layout="wide")
pages = {section: [st.Page(file, title=title, icon=icon, url_path=url, default=(url == "home"))
                   for file, title, icon, url in entries if (ROOT / file).is_file()]
         for section, entries in SECTIONS.items()}
current = st.navigation({s: p for s, p in pages.items() if p})
try:
    current.run()
finally:   # after st.stop() and st.rerun() too
    keep_keras_session()   # once a page has imported Keras (the Training page, heat maps, the Hub)
