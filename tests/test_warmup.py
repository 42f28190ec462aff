"""detector.warmup (#24 item 6): the cold-start steps say what they load, run once per process
even when the page and the background warm-up ask at the same time, and drop out of the plan
once done. Fake steps stand in for TensorFlow, so these tests load nothing."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO_ROOT
from detector import warmup


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(warmup, "_done", set())
    monkeypatch.setattr(warmup, "_locks", {})
    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup, "_settled", False)


def test_plan_names_what_loads_in_the_order_a_first_verdict_needs_it(tmp_path):
    """The messages are what the Detect page's bar shows: a user must read what is loading."""
    messages = [s.message for s in warmup.plan([tmp_path / "efficientnet_lite0_experts", tmp_path / "custom_cnn"])]
    assert messages == ["Loading TensorFlow…", "Loading the face detector (MTCNN)…",
                        "Loading model efficientnet_lite0_experts…", "Loading model custom_cnn…",
                        "Preparing Grad-CAM heatmaps for efficientnet_lite0_experts…"]
    assert not any("Grad-CAM" in s.message for s in warmup.plan([tmp_path / "m"], gradcam=False))


def test_a_step_runs_once_and_a_second_caller_waits_for_it():
    """The page must not load a second copy of a model the warm-up thread is loading: it
    waits for that load, and finds the step done."""
    calls, started = [], threading.Event()

    def slow():
        started.set()
        time.sleep(0.3)
        calls.append(1)

    step = warmup.Step(("model", "x"), "Loading model x…", slow)
    other = threading.Thread(target=warmup.run, args=(step,))
    other.start()
    started.wait(5)
    t0 = time.perf_counter()
    warmup.run(step)  # returns only once the other thread's run is over
    assert calls == [1] and time.perf_counter() - t0 > 0.1
    other.join()
    warmup.run(step)
    assert calls == [1]


def test_done_steps_leave_the_plan_and_reports_come_before_each_step(tmp_path):
    seen = []
    steps = [warmup.Step(("a",), "A…", lambda: seen.append("ran A")),
             warmup.Step(("faces",), warmup.FACE_DETECTOR, lambda: seen.append("ran faces"))]
    warmup.run_all(steps, lambda i, n, message: seen.append((i, n, message)))
    assert seen == [(0, 2, "A…"), "ran A", (1, 2, warmup.FACE_DETECTOR), "ran faces"]
    assert warmup.FACE_DETECTOR not in [s.message for s in warmup.plan([tmp_path / "m"])]


def test_a_failing_step_is_not_marked_done():
    """The page retries a step the warm-up could not do, and shows its error."""
    def broken():
        raise OSError("model file unreadable")

    step = warmup.Step(("model", "bad"), "Loading model bad…", broken)
    with pytest.raises(OSError):
        warmup.run(step)
    assert step.key not in warmup._done


def test_start_runs_in_the_background_once_and_can_be_switched_off(monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(warmup, "plan", lambda paths, gradcam=True: [warmup.Step(("x",), "X…", lambda: ran.append(1))])
    monkeypatch.setenv(warmup.WARMUP_ENV, "0")
    assert warmup.start([tmp_path / "m"]) is None
    monkeypatch.delenv(warmup.WARMUP_ENV)
    thread = warmup.start([tmp_path / "m"])
    assert thread is not None and thread.daemon
    assert warmup.start([tmp_path / "m"]) is thread  # once per process
    thread.join(5)
    assert ran == [1]


def test_gradcam_asked_for_during_its_trace_waits_for_that_trace(tiny_run):
    """A page asking for a heatmap while the warm-up traces the model's compiled Grad-CAM must
    wait for that trace and use it: a second trace, or an eager pass beside it, keeps the
    server larger for good. The maps are the compiled function's."""
    import numpy as np

    from conftest import smooth_image
    from detector import explain, inference

    det = inference.load_detector(str(tiny_run))
    batch = det.prepare([smooth_image(np.random.default_rng(s), 48) for s in range(2)]).astype(np.float32)
    key = (id(det.model), det.gradcam_layer)
    explain._traced.discard(key)
    with explain._tracing_guard:
        lock = explain._tracing.setdefault(key, threading.Lock())
    got = []
    lock.acquire()  # the warm-up thread, tracing
    try:
        asker = threading.Thread(target=lambda: got.append(explain.gradcam(det.model, batch, det.gradcam_layer)))
        asker.start()
        asker.join(0.5)
        assert asker.is_alive() and not got  # waiting, not computing on its own
    finally:
        lock.release()
    asker.join(60)
    assert key in explain._traced and len(got) == 1
    want = explain._gradcam_fn(det.model, det.gradcam_layer)(batch).numpy()
    peak = want.reshape(2, -1).max(axis=1).reshape(-1, 1, 1)
    np.testing.assert_allclose(got[0], np.where(peak > 0, want / np.maximum(peak, 1e-12), 0.0), atol=1e-5)


def test_the_heap_is_frozen_once_after_tensorflow_and_the_face_detector_before_any_model(monkeypatch):
    """Streamlit collects garbage twice after every run: the heap TensorFlow and MTCNN leave is
    frozen (once) so those collections stop costing ~0.5 s per slider move; not before both are
    in, and before a model loads (a frozen model could not be freed when the cache drops it)."""
    calls = []
    monkeypatch.setattr(warmup.gc, "collect", lambda *a: calls.append("collect"))
    monkeypatch.setattr(warmup.gc, "freeze", lambda: calls.append("freeze"))
    warmup.run_all([warmup.Step(("tensorflow",), warmup.TENSORFLOW, lambda: calls.append("tf"))])
    assert calls == ["tf"]  # no face detector yet
    warmup.run_all([warmup.Step(("faces",), warmup.FACE_DETECTOR, lambda: calls.append("faces")),
                    warmup.Step(("model", "m"), "Loading model m…", lambda: calls.append("model m"))])
    assert calls == ["tf", "faces", "collect", "freeze", "model m"]
    warmup.run_all([warmup.Step(("model", "n"), "Loading model n…", lambda: calls.append("model n"))])
    assert calls[-1] == "model n" and calls.count("freeze") == 1  # once per process
    assert warmup.settle_heap() is False


def test_settle_heap_really_freezes_and_later_garbage_is_still_collected():
    """In a fresh interpreter: what lives at the freeze is frozen, a collection no longer visits
    it, and a reference cycle made afterwards is still freed."""
    code = (
        "import gc, weakref\n"
        "from detector import warmup\n"
        "keep = [[i] for i in range(50_000)]\n"
        "assert warmup.settle_heap() and gc.get_freeze_count() >= 50_000\n"
        "class C: pass\n"
        "a = C(); a.me = a; gone = weakref.ref(a); del a\n"
        "gc.collect()\n"
        "assert gone() is None\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=REPO_ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
