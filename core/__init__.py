"""Grin's recognition engine: from a picture to labelled faces. Never imports streamlit."""
