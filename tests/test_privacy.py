"""Uploads never touch the disk: detecting uploaded images writes no file anywhere.

Two witnesses, around the upload + detection only (fixtures, imports and the first empty
render of the page happen before):

1. Snapshots of (path, size, mtime) of the working tree (minus .venv, .git, __pycache__,
   .pytest_cache), of the temp folder (a dedicated, empty TMPDIR for the test), of the
   decoded-pixel caches (~/.cache/deepfake-lab and $DEEPFAKE_LAB_CACHE) and of the models
   folder in use, taken before and after: nothing may appear, change or vanish.
2. A Python audit hook (process-wide, every thread: AppTest runs the page in this process)
   that records every file opened for writing, created, renamed, removed or truncated,
   ANYWHERE on disk; it must record nothing.

The working tree is shared with people editing files while the tests run, so a tree change
is tolerated only when a repeat of the same detection on fresh images leaves the tree
untouched (a real leak writes on every detection); the temp/cache/models folders and the
audit hook are strict on every attempt.

Models: the shipped ones when models/ has any, otherwise the tiny run of conftest.py.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, fake_image, smooth_image
from detector import store

# isort: split
# Keras imports matplotlib when it is installed (optional, for plots; a dev dependency here),
# which creates its own config and cache folders the first time a process imports it: library
# set-up, not upload data. Done here, before any window opens.
import matplotlib  # noqa: E402

matplotlib.get_configdir()
matplotlib.get_cachedir()

APP = str(REPO_ROOT / "streamlit_app.py")
VERDICTS = {"REAL", "FAKE", "UNCERTAIN", "NO FACE", "CANNOT JUDGE"}
SKIP_DIRS = {".venv", ".git", "__pycache__", ".pytest_cache"}
ATTEMPTS = 3

# --- the audit hook ---------------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "os.link", "os.symlink",
                 "os.utime", "os.mkfifo", "os.mknod", "shutil.copyfile", "shutil.copytree", "shutil.move",
                 "shutil.rmtree", "shutil.unpack_archive", "tempfile.mkstemp", "tempfile.mkdtemp"}


class _WriteRecorder:
    """Records file-writing operations while `on`; installed once (audit hooks stay for good)."""

    def __init__(self) -> None:
        self.on = False
        self.seen: list[tuple] = []
        self._lock = threading.Lock()

    def __call__(self, event: str, args: tuple) -> None:
        if not self.on:
            return
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if isinstance(path, int) or path is None:
                return  # an already open descriptor
            writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                      else isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
            if not writes or str(path).startswith(("/dev/", "/proc/")):
                return
            record = (event, str(path), mode if mode is not None else flags)
        elif event in _WRITE_EVENTS:
            record = (event, *[str(a) for a in args[:2]])
        else:
            return
        with self._lock:
            self.seen.append(record)


_RECORDER = _WriteRecorder()
_INSTALLED = []


@pytest.fixture(scope="module")
def recorder() -> _WriteRecorder:
    if not _INSTALLED:
        sys.addaudithook(_RECORDER)
        _INSTALLED.append(True)
    _RECORDER.on = False
    yield _RECORDER
    _RECORDER.on = False


# --- snapshots --------------------------------------------------------------------------------

def _snapshot(root: Path) -> dict[str, tuple]:
    """path -> (size, mtime_ns) of every file under root, path -> ('dir',) of every folder."""
    out: dict[str, tuple] = {}
    if not root.exists():
        return out
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        out[folder] = ("dir",)
        for name in files:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:  # vanished while walking
                continue
            out[path] = (st.st_size, st.st_mtime_ns)
    return out


def _diff(before: dict, after: dict) -> list[str]:
    return sorted(f"{'added' if k not in before else 'removed' if k not in after else 'changed'}: {k}"
                  for k in set(before) | set(after) if before.get(k) != after.get(k))


@pytest.fixture()
def quiet_tmp(tmp_path, monkeypatch) -> Path:
    """A dedicated, empty temp folder: TMPDIR and tempfile.gettempdir() point at it."""
    tmp = tmp_path / "TMPDIR"
    tmp.mkdir()
    for var in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(var, str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    assert tempfile.gettempdir() == str(tmp)
    return tmp




def _strict_roots(tmp: Path, models: Path) -> list[Path]:
    caches = {Path.home() / ".cache" / "deepfake-lab", Path(tmp)}
    if os.environ.get("DEEPFAKE_LAB_CACHE"):
        caches.add(Path(os.environ["DEEPFAKE_LAB_CACHE"]))
    if REPO_ROOT not in models.resolve().parents:
        caches.add(models)
    return sorted(caches)


def _leaves_no_trace(action, tmp: Path, models: Path, recorder: _WriteRecorder) -> None:
    """Run action(attempt) inside the snapshots and the audit hook, as described above."""
    strict = _strict_roots(tmp, models)
    tree_diffs = []
    for attempt in range(ATTEMPTS):
        before = {r: _snapshot(r) for r in strict}
        tree_before = _snapshot(REPO_ROOT)
        recorder.seen.clear()
        recorder.on = True
        try:
            action(attempt)
        finally:
            recorder.on = False
        writes = list(recorder.seen)
        tree_after = _snapshot(REPO_ROOT)
        after = {r: _snapshot(r) for r in strict}
        assert writes == [], f"attempt {attempt}: files written during detection: {writes}"
        for r in strict:
            assert _diff(before[r], after[r]) == [], f"attempt {attempt}: {r} changed"
        tree_diffs.append(_diff(tree_before, tree_after))
        if not tree_diffs[-1]:
            return
    pytest.fail(f"the working tree changed during every detection: {tree_diffs}")


def _images(seed: int) -> list[tuple[str, bytes, str]]:
    """Fresh upload files per attempt (a PNG and a JPEG): nothing can come from a cache."""
    rng = np.random.default_rng(1000 + seed)
    png, jpg = io.BytesIO(), io.BytesIO()
    Image.fromarray(smooth_image(rng, 120)).save(png, format="PNG")
    Image.fromarray(fake_image(rng, 96)).save(jpg, format="JPEG", quality=92)
    return [(f"private_{seed}.png", png.getvalue(), "image/png"),
            (f"private_{seed}.jpg", jpg.getvalue(), "image/jpeg")]


# --- the tests ----------------------------------------------------------------------------

@pytest.mark.slow
def test_detect_page_upload_writes_no_file(models_root, quiet_tmp, recorder, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))  # app/ui.py reads it per call
    app = AppTest.from_file(APP, default_timeout=300)
    app.run()
    assert not app.exception, app.exception

    def upload_and_detect(attempt: int) -> None:
        files = _images(attempt)
        archive = io.BytesIO()  # the same images in a zip: it is opened in memory too
        with zipfile.ZipFile(archive, "w") as z:
            for name, data, _ in files:
                z.writestr(f"inner/{name}", data)
        zip_name = f"private_{attempt}.zip"
        app.toggle(key="det_forensics").set_value(True)  # ELA, FFT and EXIF views too
        app.file_uploader(key="det_upload").set_value([*files, (zip_name, archive.getvalue(), "application/zip")]).run()
        assert not app.exception, app.exception
        table = app.dataframe[0].value
        assert list(table["file"]) == [f[0] for f in files] + [f"{zip_name}/inner/{f[0]}" for f in files]
        assert set(table["verdict"]) <= VERDICTS, table

    _leaves_no_trace(upload_and_detect, quiet_tmp, models_root, recorder)


@pytest.mark.slow
def test_compare_page_labelled_zip_and_enlarged_heatmaps_write_no_file(models_root, quiet_tmp, recorder,
                                                                       monkeypatch):
    """The compare page scores an uploaded labelled zip with every model and shows one of its
    images large with each model's Grad-CAM, all in memory."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))
    models = store.model_names(models_root)[:3]
    app = AppTest.from_file(APP, default_timeout=300)
    app.run()
    app.switch_page("app/pages/compare.py").run()
    app.multiselect(key="cmp_models").set_value(models).run()
    app.button_group(key="cmp_source").set_value("Your labelled set").run()
    assert not app.exception, app.exception

    def score_and_enlarge(attempt: int) -> None:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            for name, data, _ in _images(attempt):
                z.writestr(f"set/{'real' if name.endswith('.png') else 'fake'}/{name}", data)
        app.file_uploader(key="cmp_zip").set_value((f"labelled_{attempt}.zip", archive.getvalue(),
                                                    "application/zip")).run()
        app.slider(key=f"cmp_thr_{models[0]}").set_value(0.0).run()  # it calls every real image fake
        assert not app.exception, app.exception
        (table,) = [d for d in app.dataframe if "why" in d.value.columns]
        row = list(table.value["path"]).index(f"set/real/private_{attempt}.png")
        app.session_state[table.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
        app.run()
        assert not app.exception, app.exception
        assert len(app.get("image")) == 1 + len(models)  # the image and one heatmap per model

    _leaves_no_trace(score_and_enlarge, quiet_tmp, models_root, recorder)


@pytest.mark.slow
def test_analyze_source_bytes_writes_no_file(models_root, quiet_tmp, recorder):
    from detector import inference

    model = models_root / store.default_model_name(models_root)

    def detect(attempt: int) -> None:
        det = inference.load_detector(model)  # loaded inside the window the first time
        for _, data, _ in _images(attempt):
            result = det.analyze_source(data, gradcam=True)
            assert result.faces and result.verdict in VERDICTS

    _leaves_no_trace(detect, quiet_tmp, models_root, recorder)


def test_the_witnesses_would_see_a_write(quiet_tmp, recorder, tmp_path):
    """Guard against a blind test: a write in the temp folder is caught by both witnesses."""
    before = _snapshot(quiet_tmp)
    recorder.seen.clear()
    recorder.on = True
    try:
        with tempfile.NamedTemporaryFile(delete=False, suffix=".png") as fh:
            fh.write(b"x")
        fd = os.open(tmp_path / "raw.bin", os.O_WRONLY | os.O_CREAT)
        os.close(fd)
    finally:
        recorder.on = False
    assert any(fh.name in r[1] for r in recorder.seen), recorder.seen
    assert any("raw.bin" in r[1] for r in recorder.seen), recorder.seen
    assert _diff(before, _snapshot(quiet_tmp)) == [f"added: {fh.name}"]
