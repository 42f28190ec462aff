"""Loaded models are bounded (#24): every cache that holds a loaded model is an LRU of
store.MAX_LOADED entries (env DEEPFAKE_LAB_MAX_MODELS), read at import."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_every_model_cache_has_the_one_bound():
    code = ("from detector import explain, inference, store\n"
            "from app import ui\n"
            "print(store.MAX_LOADED, store._load.cache_info().maxsize, inference._cached.cache_info().maxsize,"
            " explain._gradcam_fn.cache_info().maxsize, ui._detector._info.max_entries)\n")
    for env, want in (("3", 3), ("", 5), ("junk", 5), ("0", 1)):
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "DEEPFAKE_LAB_MAX_MODELS": env, "PYTHONPATH": str(REPO_ROOT)})
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == [str(want)] * 5, (env, done.stdout)
