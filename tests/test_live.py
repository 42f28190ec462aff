"""detector/live.py: the Detect page's live camera mode, without a browser.

Tracking, smoothing, the labelling rule and drawing run on synthetic frames with a stub
detector whose scores the test chooses (so a wrong average or a lost track shows as a wrong
label); the real path (MTCNN on a downscaled copy, the tiny model) runs on a clip made from the
shipped sample faces. The browser test is tests/test_live_camera.py.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from detector import faces, images, inference, live, report

ROOT = Path(__file__).resolve().parent.parent


class StubDetector:
    """Scores the crops with the next values of a script (one list per analysed frame)."""

    def __init__(self, script, threshold=0.5, novelty=None):
        self.threshold = threshold
        self.script = list(script)
        self.novelty = novelty
        self.calls = 0

    def score_crops(self, crops):
        p = np.asarray(self.script[self.calls % len(self.script)], float)[:len(crops)]
        self.calls += 1
        nov = None if self.novelty is None else np.full(len(crops), self.novelty, float)
        return inference.BatchScores(p, None, nov)


def frame(h=240, w=320, value=40):
    return np.full((h, w, 3), value, np.uint8)


def region(rgb, box, kind="face"):
    x, y, s, _ = box
    return faces.FaceRegion(box=box, face_box=(x + 10, y + 10, s - 20, s - 20), confidence=0.99, kind=kind,
                            crop=rgb[y:y + s, x:x + s].copy())


@pytest.fixture
def boxes(monkeypatch):
    """live.find_regions replaced: each analysed frame gets the next list of boxes."""
    plan: list[list[tuple]] = []

    def fake(rgb, detect_side=live.DETECT_SIDE):
        boxes = plan.pop(0)
        if not boxes:
            return [faces.whole_image_region(rgb, kind="no_face")]
        return [region(rgb, b) for b in boxes]

    monkeypatch.setattr(live, "find_regions", fake)
    return plan


def test_iou():
    assert live.iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert live.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert live.iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert live.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_a_face_keeps_its_track_and_its_label_is_the_window_mean(boxes):
    """Three frames of one face moving a little: one track; the label's P(fake) is the mean of
    the scores so far, so a single low score after two high ones leaves it FAKE."""
    det = StubDetector([[0.9], [0.9], [0.1]], threshold=0.5)
    proc = live.LiveProcessor(det, background=False)
    boxes += [[(100, 60, 100, 100)], [(104, 62, 100, 100)], [(108, 64, 100, 100)]]
    labels = [proc.analyse(frame()) for _ in range(3)]
    assert [lab[0].track for lab in labels] == [1, 1, 1]
    assert labels[-1][0].p_fake == pytest.approx((0.9 + 0.9 + 0.1) / 3)
    assert labels[-1][0].verdict == inference.FAKE
    assert labels[-1][0].frames == 3
    assert labels[-1][0].box == (108, 64, 100, 100)  # the newest box is drawn


def test_the_window_forgets_old_scores(boxes):
    """After WINDOW low scores the early high ones no longer count: the label turns REAL."""
    det = StubDetector([[0.95]] * 3 + [[0.05]] * live.WINDOW, threshold=0.5)
    proc = live.LiveProcessor(det, background=False)
    boxes += [[(50, 50, 100, 100)]] * (3 + live.WINDOW)
    for _ in range(3 + live.WINDOW):
        last = proc.analyse(frame())
    assert last[0].p_fake == pytest.approx(0.05)
    assert last[0].verdict == inference.REAL


def test_two_faces_two_tracks_and_a_lost_face_is_dropped(boxes):
    """Far-apart faces get their own tracks and scores; a face missing MAX_MISSES analyses in a
    row loses its track, and coming back it starts a new one (its old scores do not count)."""
    det = StubDetector([[0.9, 0.1]] * 2 + [[0.1]] * live.MAX_MISSES + [[0.1, 0.1]], threshold=0.5)
    proc = live.LiveProcessor(det, background=False)
    boxes += [[(10, 10, 100, 100), (200, 10, 100, 100)]] * 2
    boxes += [[(200, 10, 100, 100)]] * live.MAX_MISSES
    boxes += [[(10, 10, 100, 100), (200, 10, 100, 100)]]
    first = proc.analyse(frame())
    assert [(lab.track, lab.verdict) for lab in first] == [(1, inference.FAKE), (2, inference.REAL)]
    proc.analyse(frame())
    for _ in range(live.MAX_MISSES):
        only = proc.analyse(frame())
    assert [lab.track for lab in only] == [2]
    back = proc.analyse(frame())
    assert [lab.track for lab in back] == [3, 2]
    assert back[0].verdict == inference.REAL and back[0].frames == 1


def test_labels_follow_the_one_verdict_rule(boxes):
    """The label is inference.judged_verdict of the smoothed score: the band gives UNCERTAIN,
    a square under MIN_FACE_SIDE or an unfamiliar face gives CANNOT JUDGE, and a changed
    threshold applies from the next analysis."""
    det = StubDetector([[0.52]], threshold=0.5)
    proc = live.LiveProcessor(det, band=0.05, background=False)
    boxes += [[(50, 50, 100, 100)]]
    assert proc.analyse(frame())[0].verdict == inference.UNCERTAIN
    proc.configure(threshold=0.3, band=0.0)
    boxes += [[(50, 50, 100, 100)]]
    assert proc.analyse(frame())[0].verdict == inference.FAKE
    small = inference.MIN_FACE_SIDE - 4
    boxes += [[(50, 50, small, small)]]
    lab = live.LiveProcessor(det, background=False).analyse(frame())[0]
    assert lab.verdict == inference.CANNOT_JUDGE and lab.text == inference.CANNOT_JUDGE
    boxes += [[(50, 50, 100, 100)]]
    odd = live.LiveProcessor(StubDetector([[0.9]], novelty=1.5), background=False).analyse(frame())[0]
    assert odd.verdict == inference.CANNOT_JUDGE


def test_another_model_starts_the_tracks_afresh(boxes):
    det = StubDetector([[0.9]])
    proc = live.LiveProcessor(det, background=False)
    boxes += [[(50, 50, 100, 100)]] * 2
    proc.analyse(frame())
    proc.configure(detector=StubDetector([[0.1]]))
    lab = proc.analyse(frame())[0]
    assert lab.track == 2 and lab.frames == 1 and lab.verdict == inference.REAL


def test_draw_boxes_in_the_verdict_colour_and_leaves_the_input_alone():
    rgb = frame()
    before = rgb.copy()
    labs = [live.Label(1, (40, 40, 100, 100), inference.FAKE, 0.9, 3),
            live.Label(2, (180, 40, 100, 100), inference.REAL, 0.1, 3)]
    out = live.draw(rgb, labs)
    assert np.array_equal(rgb, before)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert tuple(out[90, 40]) == report.VERDICT_COLOURS[inference.FAKE]   # left edge of box 1
    assert tuple(out[90, 180]) == report.VERDICT_COLOURS[inference.REAL]  # left edge of box 2
    assert tuple(out[90, 90]) == (40, 40, 40)                             # inside: the picture
    assert tuple(out[230, 310]) == (40, 40, 40)                           # far corner untouched
    noted = live.draw(rgb, [], note="no face found")
    assert tuple(noted[1, 1]) == report.VERDICT_COLOURS[inference.NO_FACE]


def test_process_counts_labelled_frames_and_keeps_the_raw_frame(boxes):
    """The callback returns the frame labelled, counts it, and keeps an unlabelled copy for
    freeze; a frame with no face is returned with the note and is not counted as labelled."""
    det = StubDetector([[0.9]])
    proc = live.LiveProcessor(det, background=False)
    boxes += [[(40, 40, 100, 100)], []]
    raw = frame(value=70)
    out = proc.process(raw)
    assert tuple(out[90, 40]) == report.VERDICT_COLOURS[inference.FAKE]
    snap = proc.snapshot()
    assert np.array_equal(snap, raw) and snap is not raw
    out2 = proc.process(frame(value=80))
    assert tuple(out2[1, 1]) == report.VERDICT_COLOURS[inference.NO_FACE]
    s = proc.stats()
    assert (s.returned, s.processed, s.labelled) == (2, 2, 1)
    assert s.labels == ()


def test_background_analysis_labels_later_frames_and_stops(boxes):
    """In background mode the callback never waits for the model: frames come back at once
    (the first unlabelled), the thread analyses the newest one, and later frames carry its
    labels; stop() ends the thread."""
    gate = threading.Event()

    class Slow(StubDetector):
        def score_crops(self, crops):
            gate.wait(30)
            return super().score_crops(crops)

    proc = live.LiveProcessor(Slow([[0.9]]), background=True)
    boxes += [[(40, 40, 100, 100)]] * 50
    first = proc.process(frame())
    assert np.array_equal(first, frame())  # nothing analysed yet: returned as it came
    gate.set()
    deadline = time.monotonic() + 60
    while proc.stats().processed == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.stats().processed >= 1
    out = proc.process(frame())
    assert tuple(out[90, 40]) == report.VERDICT_COLOURS[inference.FAKE]
    proc.stop()
    assert proc._thread is None
    assert proc.stats().labelled >= 1 and proc.stats().error == ""


def test_an_analysis_failure_is_reported_and_the_stream_goes_on(monkeypatch):
    def broken(rgb, detect_side=live.DETECT_SIDE):
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(live, "find_regions", broken)
    proc = live.LiveProcessor(StubDetector([[0.5]]), background=False)
    out = proc.process(frame())
    assert out.shape == (240, 320, 3)
    assert "detector exploded" in proc.stats().error


def test_y4m_round_trip_and_header():
    rng = np.random.default_rng(0)
    # colours constant over 2x2 blocks: 4:2:0 keeps them up to rounding
    blocks = rng.integers(30, 220, (3, 12, 16, 3)).astype(np.uint8)
    frames = [np.repeat(np.repeat(b, 2, 0), 2, 1) for b in blocks]
    data = live.y4m_bytes(frames, fps=10)
    assert data.startswith(b"YUV4MPEG2 W32 H24 F10:1 ")
    assert data.count(b"FRAME\n") == 3
    back = live.read_y4m(data)
    assert len(back) == 3
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(frames, back)) <= 4
    with pytest.raises(ValueError):
        live.read_y4m(b"not a clip")


def test_frame_png_is_lossless():
    rgb = np.random.default_rng(1).integers(0, 255, (30, 40, 3)).astype(np.uint8)
    assert np.array_equal(images.decode_image(live.frame_png(rgb)), rgb)


def test_video_frame_callback_returns_a_labelled_av_frame(boxes):
    av = pytest.importorskip("av")
    proc = live.LiveProcessor(StubDetector([[0.1]]), background=False)
    boxes += [[(40, 40, 100, 100)]]
    out = proc.video_frame_callback(av.VideoFrame.from_ndarray(frame(), format="rgb24"))
    assert isinstance(out, av.VideoFrame) and (out.width, out.height) == (320, 240)
    assert tuple(out.to_ndarray(format="rgb24")[90, 40]) == report.VERDICT_COLOURS[inference.REAL]


def sample_frames(n=2):
    pics = [live.around_face(images.decode_image(ROOT / "sample_images" / name))
            for name in ("astronaut.jpg", "fake_face_swap.jpg")]
    return live.demo_clip(pics, n_frames=n, size=(640, 480))


def test_regions_found_on_the_small_copy_match_the_full_frame():
    """find_regions (MTCNN on a 320 px copy) finds the same faces as faces.find_faces on the
    640x480 frame, boxes within a few pixels, cut from the full-size frame."""
    rgb = sample_frames(1)[0]
    small = live.find_regions(rgb)
    full = faces.find_faces(rgb)
    assert [r.kind for r in small] == [r.kind for r in full] == ["face", "face"]
    for a, b in zip(small, full):
        assert live.iou(a.box, b.box) > 0.7
        x, y, s, _ = a.box
        assert np.array_equal(a.crop, rgb[y:y + s, x:x + s])


def test_the_real_path_scores_the_clip_like_the_detector(tiny_run):
    """With a real Detector (the tiny model) every sample face gets a track and a verdict, and
    its P(fake) is what the detector gives the same crops (one frame: no averaging yet)."""
    det = inference.Detector(tiny_run)
    proc = live.LiveProcessor(det, background=False)
    rgb = sample_frames(1)[0]
    labels = proc.analyse(rgb)
    assert len(labels) == 2
    expected = det.score_crops([r.crop for r in live.find_regions(rgb)]).p_fake
    assert [lab.p_fake for lab in labels] == pytest.approx(list(expected), abs=1e-6)
    for lab in labels:
        assert lab.verdict == inference.judged_verdict(lab.p_fake, det.threshold, 0.0, "face", lab.box, None)


def test_ice_servers_are_empty_unless_set(monkeypatch):
    """No STUN/TURN by default (localhost needs none, and nothing is asked of the internet);
    the setting or the environment variable gives them; a malformed one is refused."""
    monkeypatch.delenv(live.ICE_ENV, raising=False)
    assert live.ice_servers() == []
    assert live.ice_servers([]) == []
    monkeypatch.setenv(live.ICE_ENV, '[{"urls": ["stun:stun.example.org:3478"]}]')
    assert live.ice_servers() == [{"urls": ["stun:stun.example.org:3478"]}]
    own = [{"urls": "turn:turn.example.org", "username": "u", "credential": "c"}]
    assert live.ice_servers(own) == own
    for bad in ("not json", '{"urls": "x"}', '[{"url": "x"}]'):
        with pytest.raises(ValueError):
            live.ice_servers(bad)


def test_streamlit_webrtc_imports_after_tensorflow():
    """aiortc's SRTP binding segfaulted on import once TensorFlow was loaded (its BoringSSL
    symbols come first in the process); app/live_ui.py loads it with RTLD_DEEPBIND. In a fresh
    interpreter: TensorFlow first, then the page's import, then an SRTP session (the binding's
    crypto in use). Never imported in this process: pytest has TensorFlow loaded."""
    if importlib.util.find_spec("streamlit_webrtc") is None:
        pytest.skip("streamlit-webrtc is not installed")
    code = ("import tensorflow\nfrom app import live_ui\nlive_ui._webrtc()\nimport pylibsrtp\n"
            "p = pylibsrtp.Policy(key=b'0' * 30, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)\n"
            "pylibsrtp.Session(policy=p)\nprint('imported')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0 and out.stdout.strip().endswith("imported"), (out.returncode, out.stderr[-2000:])


class _StubContext:
    class state:
        playing = False


def test_detect_page_live_mode_freezes_a_frame_into_a_result(models_root, monkeypatch):
    """The Detect page (AppTest, no browser) with the live camera on: the counts render, Freeze
    before any frame says so, and a frame the stream delivered, frozen, becomes a normal result
    row (faces found and scored) beside nothing else; Clear removes it. streamlit-webrtc's
    component needs a real server session, so it is a stub here (the browser test runs it)."""
    from streamlit.testing.v1 import AppTest

    from app import live_ui

    streamed = {}

    class StubWebrtc:
        class WebRtcMode:
            SENDRECV = "sendrecv"

        @staticmethod
        def webrtc_streamer(**kwargs):
            streamed.update(kwargs)
            return _StubContext()

    monkeypatch.setattr(live_ui, "_webrtc", lambda: StubWebrtc)
    monkeypatch.delenv(live.ICE_ENV, raising=False)
    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.toggle(key="det_live_on").set_value(True).run()
    assert not at.exception, at.exception
    assert streamed["rtc_configuration"] == {"iceServers": []}  # no STUN/TURN unless configured
    assert streamed["media_stream_constraints"]["audio"] is False
    assert any("Labelled frames: **0**" in m.value for m in at.markdown)
    at.button(key="det_live_freeze").click().run()
    assert any("No frame yet" in w.value for w in at.warning)
    proc = at.session_state[live_ui.PROCESSOR]
    assert streamed["video_frame_callback"] == proc.video_frame_callback
    proc.background = False
    proc.process(sample_frames(1)[0])
    at.button(key="det_live_freeze").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["file"]) == ["live camera (frozen frame)"]
    assert int(table["faces"].iloc[0]) == 2 and table["verdict"].iloc[0] in {"REAL", "FAKE", "UNCERTAIN"}
    assert any("Labelled frames: **1**" in m.value for m in at.markdown)
    at.button(key="det_live_clear").click().run()
    assert at.session_state[live_ui.FROZEN] is None
    assert len(at.dataframe) == 0
