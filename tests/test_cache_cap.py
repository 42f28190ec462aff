"""The on-disk caches (pixel arrays, `features_*` folders) stay under a size cap (#27).

Learning curves and generalisation runs wrote decoded pixels and features to the cache
folder and never removed any, so a server's disk filled up over weeks. `data.trim_cache`
removes the oldest files beyond the cap; files just written (another process may read them
back) and the caller's own files stay; nothing but the cache's own files is touched.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from detector import data, generalization

KB = 1024


def _file(path: Path, kb: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * (kb * KB))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_oldest_files_go_beyond_the_cap(tmp_path):
    old = _file(tmp_path / "pixels_old.npy", 100, age_s=5000)
    older_feature = _file(tmp_path / "features_dinov2" / "a.npy", 100, age_s=6000)
    middle = _file(tmp_path / "features_dinov2" / "b.npy", 100, age_s=4000)
    kept = _file(tmp_path / "pixels_kept.npy", 100, age_s=7000)  # the oldest, but the caller's own
    fresh = _file(tmp_path / "pixels_fresh.npy", 100, age_s=10)  # just written by another process
    other = _file(tmp_path / "notes.txt", 500, age_s=9000)  # not a cache file: never touched
    removed = data.trim_cache(300 * KB, root=tmp_path, keep=[kept])  # 500 KB of cache files
    assert set(removed) == {older_feature, old}
    assert not older_feature.exists() and not old.exists()
    assert middle.exists() and kept.exists() and fresh.exists() and other.exists()
    # under the cap now: nothing more goes
    assert data.trim_cache(300 * KB, root=tmp_path) == []


def test_no_cap_removes_nothing_and_the_cap_is_read_from_the_environment(tmp_path, monkeypatch):
    _file(tmp_path / "pixels_a.npy", 50, age_s=5000)
    assert data.trim_cache(None, root=tmp_path) == []
    monkeypatch.setenv(data.CACHE_MAX_ENV, "0")
    assert data.cache_limit_bytes() is None and data.trim_cache(root=tmp_path) == []
    monkeypatch.setenv(data.CACHE_MAX_ENV, "0.01")
    assert data.cache_limit_bytes() == int(0.01 * 1024 ** 2)
    assert [p.name for p in data.trim_cache(root=tmp_path)] == ["pixels_a.npy"]
    monkeypatch.delenv(data.CACHE_MAX_ENV)
    assert data.cache_limit_bytes() == data.CACHE_MAX_MB * 1024 ** 2


def _images(folder: Path, n: int, seed: int) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_load_pixels_trims_the_cache_after_writing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    stale = _file(cache / "pixels_stale.npy", 200, age_s=10_000)
    monkeypatch.setenv(data.CACHE_MAX_ENV, str(100 / 1024))  # 100 KB
    paths = _images(tmp_path / "imgs", 4, seed=0)
    first = data.load_pixels(paths, 32, progress=False)
    assert not stale.exists()  # the new array pushed the cache over its cap: the oldest went
    written = list(cache.glob("pixels_*.npy"))
    assert len(written) == 1  # its own new file stays
    again = data.load_pixels(paths, 32, progress=False)
    np.testing.assert_array_equal(first, again)


def test_cached_features_survive_a_trim_between_calls(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    calls = []

    def fn(px):
        calls.append(len(px))
        return px.reshape(len(px), -1)[:, :8].astype("float32")

    paths = _images(tmp_path / "imgs", 3, seed=1)
    features = generalization.cached_features("test", fn, 16)
    first = features(paths)
    assert calls == [3]
    cached = sorted((cache / "features_test").glob("*.npy"))
    assert len(cached) == 3
    cached[0].unlink()  # trimmed by another process
    second = features(paths)
    assert calls == [3, 1]  # only the missing one is computed again
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("value", ["not a number"])
def test_a_bad_cap_setting_falls_back_to_the_default(monkeypatch, value):
    monkeypatch.setenv(data.CACHE_MAX_ENV, value)
    assert data.cache_limit_bytes() == data.CACHE_MAX_MB * 1024 ** 2
