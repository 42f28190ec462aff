"""Cold start (#24 item 6): what a first verdict needs, loaded before it is asked for, and
said while it loads.

A first verdict on a fresh server waits for TensorFlow's import, the face detector (MTCNN,
its networks traced on a first photo), the model (its file read, its forward pass traced)
and, with heatmaps on, the model's Grad-CAM function (traced on its first call). `plan`
lists the steps still to do for a set of model folders, each with a message that says what
is loading; `start` runs them for the default model in a background thread when the server
takes its first visitor, so an upload a few seconds later finds them done. A page runs the
same `plan` before scoring, showing each message: a step the background thread is doing is
waited for (one lock per step), never done twice.

Once TensorFlow and the face detector are in, the heap they leave (~410,000 objects, there for
the life of the process) is frozen (`settle_heap`): Streamlit ends every script run, a
fragment's too, with two full garbage collections (its `runner.postScriptGC` and the
`keras.backend.clear_session()` it calls when Keras is imported), each ~0.25 s over that heap on
this machine: half a second added to every Compare slider move and Detect rerun. Models are
loaded after the freeze, so they stay collectable when the model cache drops them; with the
default model and its Grad-CAM loaded a collection takes ~12 ms.

Each step is done at most once per process (the `inference` / `explain` caches keep their
results, within `store.MAX_LOADED` models); a model evicted from those caches is loaded
again by whoever asks for it.
"""
from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WARMUP_ENV = "DEEPFAKE_LAB_WARMUP"
"""Set to 0 to start no background warm-up (the page still loads what it needs, saying what)."""

FACE_DETECTOR = "Loading the face detector (MTCNN)…"
TENSORFLOW = "Loading TensorFlow…"
MODEL = "Loading model {name}…"
GRADCAM = "Preparing Grad-CAM heatmaps for {name}…"


@dataclass(frozen=True)
class Step:
    key: tuple
    message: str
    run: Callable[[], object]


_done: set[tuple] = set()
_locks: dict[tuple, threading.Lock] = {}
_guard = threading.Lock()
_thread: threading.Thread | None = None
_settled = False
SETTLE_AFTER = {("tensorflow",), ("faces",)}
"""The steps whose objects live as long as the process: the heap is frozen once they are done,
before any model is loaded (a frozen model could never be freed once the model cache drops it)."""


def _lock(key: tuple) -> threading.Lock:
    with _guard:
        return _locks.setdefault(key, threading.Lock())


def _import_tensorflow() -> None:
    import tensorflow  # noqa: F401 - the import is the step


def _warm_face_detector() -> None:
    """Build MTCNN and run it once on a photo-sized picture: its three networks are traced on
    a first image, which would otherwise fall on the first upload."""
    from detector import faces

    faces.get_detector()
    rng = np.random.default_rng(0)
    faces.find_faces(rng.integers(0, 256, (faces.DETECT_MAX_SIDE * 3 // 4, faces.DETECT_MAX_SIDE, 3), np.uint8))


def _load_model(path: str) -> None:
    from detector import inference

    inference.load_detector(path)


def _trace_gradcam(path: str) -> None:
    from detector import inference

    det = inference.load_detector(path)
    det.heatmaps([np.zeros((det.size, det.size, 3), np.uint8)])


def plan(model_paths: Iterable[str | Path], gradcam: bool = True) -> list[Step]:
    """The steps not yet done before these model folders can score a photo (Grad-CAM for the
    first one, as the Detect page draws it), in the order a first verdict needs them."""
    paths = [str(p) for p in model_paths]
    steps = [Step(("tensorflow",), TENSORFLOW, _import_tensorflow),
             Step(("faces",), FACE_DETECTOR, _warm_face_detector)]
    for p in paths:
        steps.append(Step(("model", p), MODEL.format(name=Path(p).name), lambda p=p: _load_model(p)))
    if gradcam and paths:
        # waited for, not done eagerly beside the trace: quicker for a photo picked during the
        # trace, but it leaves the server larger for good (docs/performance.md)
        steps.append(Step(("gradcam", paths[0]), GRADCAM.format(name=Path(paths[0]).name),
                          lambda p=paths[0]: _trace_gradcam(p)))
    return [s for s in steps if s.key not in _done]


def run(step: Step) -> None:
    """Do a step once per process: a caller that finds another thread doing it waits for it."""
    with _lock(step.key):
        if step.key not in _done:
            step.run()
            _done.add(step.key)


def run_all(steps: Iterable[Step], report: Callable[[int, int, str], object] | None = None) -> None:
    """Run `steps` in order; `report(i, n, message)` is called before each (a progress bar)."""
    steps = list(steps)
    for i, step in enumerate(steps):
        if report is not None:
            report(i, len(steps), step.message)
        run(step)
        if SETTLE_AFTER <= _done:
            settle_heap()


def settle_heap() -> bool:
    """Collect once, then freeze what is left (`gc.freeze`), once per process: later
    collections skip TensorFlow's and the face detector's objects (module docstring). True
    when this call froze the heap."""
    global _settled
    with _guard:
        if _settled:
            return False
        _settled = True
    gc.collect()
    gc.freeze()
    return True


def enabled() -> bool:
    return os.environ.get(WARMUP_ENV, "1").strip() != "0"


def start(model_paths: Iterable[str | Path], gradcam: bool = True) -> threading.Thread | None:
    """Run `plan(model_paths, gradcam)` in one background (daemon) thread, once per process;
    later calls return the same thread. None when warm-up is switched off (`WARMUP_ENV`).
    A failing step is left to the page, which meets the same error and shows it."""
    global _thread
    if not enabled():
        return None
    with _guard:
        if _thread is None:
            steps = plan(model_paths, gradcam)

            def work():
                try:
                    run_all(steps)
                except Exception:  # noqa: BLE001 - the page does the step again and reports it
                    pass

            _thread = threading.Thread(target=work, name="deepfake-lab-warmup", daemon=True)
            _thread.start()
        return _thread
