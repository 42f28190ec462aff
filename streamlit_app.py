"""Deepfake Lab dashboard: `streamlit run streamlit_app.py`.

The router only: page config, the three pages of app/pages/ (st.navigation) and the shared
sidebar. Each page is a thin UI over the `detector` library (docs/architecture.md). There is
no pages/ folder beside this file on purpose: Streamlit would read it as its legacy multipage
folder and serve a direct link such as /compare without this router.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import streamlit as st  # noqa: E402
from streamlit import runtime  # noqa: E402

from app import session_expiry, ui  # noqa: E402
from detector import warmup  # noqa: E402

st.set_page_config(page_title=ui.APP_NAME, page_icon="🕵️", layout="wide")
session_expiry.install()  # closed tabs must not keep their uploads in memory
if runtime.exists():  # a served app (not AppTest): the first visit starts loading, in the background,
    default = ui.default_model()  # MTCNN and the default model, so a first upload finds them loaded
    warmup.start([ui.model_dir(default)] if default else [])

page = st.navigation([
    st.Page("app/pages/detect.py", title="Detect", icon=":material/face_retouching_off:", default=True),
    st.Page("app/pages/compare.py", title="Compare models", icon=":material/compare_arrows:"),
    st.Page("app/pages/training.py", title="Training runs", icon=":material/monitoring:"),
])

with st.sidebar:
    st.markdown(f"### {ui.APP_NAME}")
    st.caption("Open-source deepfake image detector: face-swap and GAN face checks, "
               "explained with Grad-CAM.")
    st.caption(ui.DISCLAIMER)

page.run()
