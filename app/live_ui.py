"""The Detect page's live camera mode (#29): the browser's camera streamed to the server with
streamlit-webrtc, each frame sent back with its faces boxed and labelled (detector.live), a
counter of labelled frames, and a freeze button that hands the current frame to the page's
normal Detect path. Frames live in memory only; the frozen one as PNG bytes in the session.
"""
from __future__ import annotations

import os
import sys

import streamlit as st

from app import ui
from detector import live, warmup

PROCESSOR = "det_live_processor"  # session_state: this session's detector.live.LiveProcessor
FROZEN = "det_live_frozen"        # session_state: the frozen frame's PNG bytes


def _webrtc():
    """streamlit_webrtc, imported safely after TensorFlow. aiortc's SRTP binding (pylibsrtp)
    carries its own libcrypto; loaded after TensorFlow, whose libraries put their BoringSSL
    symbols first in the process, its calls land in those and the server dies (SIGSEGV, on
    import). RTLD_DEEPBIND makes the binding use its own symbols, whatever was loaded before."""
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    if "pylibsrtp" not in sys.modules and deepbind:
        flags = sys.getdlopenflags()
        sys.setdlopenflags(os.RTLD_NOW | deepbind)
        try:
            import pylibsrtp  # noqa: F401
        finally:
            sys.setdlopenflags(flags)
    import streamlit_webrtc

    return streamlit_webrtc


def ice_servers() -> list[dict]:
    """The ICE servers: `[deepfake_lab] ice_servers = [...]` in .streamlit/secrets.toml, else
    DEEPFAKE_LAB_ICE_SERVERS (JSON), else none (localhost and a LAN need none)."""
    try:
        section = st.secrets.get("deepfake_lab") or {}
        configured = section.get("ice_servers")
    except Exception:  # noqa: BLE001 - no secrets file, or an unreadable one
        configured = None
    return live.ice_servers(configured)


def processor(model: str, threshold: float, band: float) -> live.LiveProcessor:
    """This session's frame processor, set to the page's current model, threshold and band."""
    steps = warmup.plan([ui.model_dir(model)], gradcam=False)  # TensorFlow, MTCNN, the model: waited
    if steps:                                                  # for, never loaded twice at once
        bar = st.progress(0.0, text="Preparing the live camera...")
        warmup.run_all(steps, lambda i, n, message: bar.progress(i / n, text=message))
        bar.empty()
    proc = st.session_state.get(PROCESSOR)
    if proc is None:
        proc = st.session_state[PROCESSOR] = live.LiveProcessor(ui.detector(model), threshold, band)
    else:
        proc.configure(ui.detector(model), threshold, band)
    return proc


def _counter(proc: live.LiveProcessor) -> None:
    """What the stream has done, as of this page run. Not refreshed on a timer: every Streamlit
    run (a fragment's too) ends with keras.backend.clear_session(), which empties TensorFlow's
    kernel cache, and the next analysis rebuilds MTCNN's and the model's kernels: at one run a
    second the analysis fell from ~140 ms to seconds. The video itself shows the live rate."""
    s = proc.stats()
    faces = ", ".join(lab.text for lab in s.labels) or "none"
    st.markdown(f"Labelled frames: **{s.labelled}** · returned {s.returned} ({s.returned_fps:.1f}/s) · "
                f"analysed {s.processed} ({s.processed_fps:.1f}/s, {s.analyse_ms:.0f} ms each) · faces now: {faces}",
                help="Counts since the stream started, as of the last page update (Stop, Freeze or "
                     "Update counts update them).")
    if s.error:
        st.error(f"The last frame could not be analysed: {ui.safe_md(s.error)}", icon=":material/error:")


def live_camera(model: str, threshold: float, band: float) -> bytes | None:
    """The live stream with its counter and the freeze button. Returns the frozen frame (PNG
    bytes, in memory) for the page to analyse like a photo, or None."""
    try:
        webrtc = _webrtc()
    except ImportError:
        st.warning("The live camera needs the streamlit-webrtc package (requirements.txt).",
                   icon=":material/videocam_off:")
        return None
    try:
        servers = ice_servers()
    except ValueError as exc:
        st.error(f"The ICE server setting is wrong: {ui.safe_md(exc)}", icon=":material/error:")
        return None
    proc = processor(model, threshold, band)
    st.caption(f"Press start and allow the camera: each face is boxed and labelled by **{ui.safe_md(model)}** "
               f"(its label averages the last {live.WINDOW} analysed frames of that face). Frames are "
               "analysed as fast as this machine allows; the others come back with the last boxes. "
               "Nothing is stored. **Freeze** analyses the current frame like a photo, with its report.")
    ctx = webrtc.webrtc_streamer(key="det_live", mode=webrtc.WebRtcMode.SENDRECV,
                    video_frame_callback=proc.video_frame_callback, on_video_ended=proc.stop,
                    rtc_configuration={"iceServers": servers},
                    media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
                    async_processing=True)
    c1, c2, c3, _ = st.columns([1, 1, 1, 2])
    c3.button("Update counts", key="det_live_counts", disabled=not ctx.state.playing)
    if c1.button("Freeze", key="det_live_freeze", icon=":material/photo_camera:",
                 help="Analyse the current frame like an uploaded photo: table, Grad-CAM, evidence, reports."):
        frame = proc.snapshot()
        if frame is None:
            st.warning("No frame yet: start the camera first.", icon=":material/videocam_off:")
        else:
            st.session_state[FROZEN] = live.frame_png(frame)
    if st.session_state.get(FROZEN) is not None and c2.button("Clear the frozen frame", key="det_live_clear"):
        st.session_state[FROZEN] = None
    _counter(proc)
    return st.session_state.get(FROZEN)
