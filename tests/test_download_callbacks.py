"""The Detect page's download buttons must not keep a session's uploads alive (#27).

Streamlit keeps a deferred download's callable (HTML report, PDF report) in its media file
manager after the session that made it has ended. A lambda written in a page script closes
over that script's globals, and they hold `entries`: every decompressed upload of the
session. Four sessions with a large zip then kept gigabytes in the server for good. The
callables must be `functools.partial` objects over the reports' inputs only.
"""
from __future__ import annotations

import functools
import gc
import sys
import types

import pytest

from conftest import REPO_ROOT, zip_bytes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _page_function(fn) -> bool:
    """A function written in a page script: its globals are the script's (they hold `entries`)."""
    return isinstance(fn, types.FunctionType) and "entries" in fn.__globals__


def _reachable(root, limit: int = 500_000):
    """Objects reachable from `root`, not walking into modules, classes or module globals
    (those live for the whole server anyway)."""
    module_dicts = {id(vars(m)) for m in list(sys.modules.values()) if m is not None and hasattr(m, "__dict__")}
    seen, stack = {id(root)}, [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        yield obj
        for ref in gc.get_referents(obj):
            if (id(ref) in seen or isinstance(ref, (types.ModuleType, type)) or id(ref) in module_dicts):
                continue
            seen.add(id(ref))
            stack.append(ref)


@pytest.mark.slow
def test_report_downloads_hold_no_upload(models_root, monkeypatch):
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.testing.v1 import AppTest

    from detector import inputs

    member = (REPO_ROOT / "sample_images" / "astronaut.jpg").read_bytes()
    # a zip member is decompressed into a fresh bytes object held by the page's `entries`
    upload = zip_bytes({"set/astronaut.jpg": member + b"\0" * 4096})
    deferred = []
    original = MediaFileManager.add_deferred

    def recording(self, data_callable, *args, **kwargs):
        deferred.append(data_callable)
        return original(self, data_callable, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))
    monkeypatch.chdir(REPO_ROOT)
    at = AppTest.from_file(str(REPO_ROOT / "streamlit_app.py"), default_timeout=180)
    at.run()
    at.toggle(key="det_gradcam").set_value(False)
    at.file_uploader(key="det_upload").set_value([("set.zip", upload, "application/zip")]).run()
    assert not at.exception, at.exception
    assert at.dataframe, "the upload was not scored"
    assert len(deferred) >= 2, "expected the HTML and PDF report buttons to register deferred downloads"
    size = len(member) + 4096
    for fn in deferred:
        assert isinstance(fn, functools.partial), f"a download callable is {type(fn).__name__}, not a partial"
        assert not _page_function(fn.func), f"{fn.func.__qualname__} is a page-script function (holds its globals)"
        for obj in _reachable(fn):
            assert not isinstance(obj, inputs.Entry), f"{fn.func.__qualname__} reaches an upload entry"
            assert not (isinstance(obj, (bytes, bytearray)) and len(obj) == size), \
                f"{fn.func.__qualname__} reaches the uploaded file's bytes"
            assert not _page_function(obj), f"{fn.func.__qualname__} reaches a page-script function"
