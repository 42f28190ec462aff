"""Self-blended pseudo-fakes, down-and-up scaling augmentation, and the training flags that
use them (--self-blend, --train-sources for leave-one-source-out runs)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SOURCES, smooth_image
from detector import selfblend


def _face(seed: int = 0, size: int = 64) -> np.ndarray:
    return smooth_image(np.random.default_rng(seed), size)


def test_mask_is_soft_centred_and_bounded():
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = selfblend.ellipse_mask((64, 80), rng)
        assert m.shape == (64, 80) and m.dtype == np.float32
        assert 0.0 <= m.min() and m.max() <= 1.0
        assert m[32, 40] > 0.2            # covers the face centre
        assert m[0, 0] < 0.02 and m[-1, -1] < 0.02  # leaves the corners (the surroundings) alone
        assert ((m > 0.01) & (m < m.max() * 0.99)).any()  # a soft edge, not a hard cut


def test_self_blend_changes_the_inside_and_keeps_the_outside():
    img = _face(3)
    out = selfblend.self_blend(img, np.random.default_rng(7))
    assert out.shape == img.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - img.astype(int)).sum(axis=2)
    assert diff[24:40, 24:40].mean() > 1.0          # the blended face region differs
    assert diff[:3, :3].max() <= 1 and diff[-3:, -3:].max() <= 1  # the corners are untouched


def test_self_blend_is_seeded_and_rejects_bad_input():
    img = _face(4)
    a = selfblend.self_blend(img, np.random.default_rng(11))
    b = selfblend.self_blend(img, np.random.default_rng(11))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        selfblend.self_blend(img.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        selfblend.self_blend(img[..., 0], np.random.default_rng(0))


def test_make_pseudo_fakes_takes_the_requested_fraction():
    pixels = np.stack([_face(s, 32) for s in range(10)])
    idx, fakes = selfblend.make_pseudo_fakes(pixels, 0.5, seed=2)
    assert len(idx) == len(fakes) == 5 and len(set(idx)) == 5 and idx.max() < 10
    assert fakes.shape == (5, 32, 32, 3) and fakes.dtype == np.uint8
    idx2, fakes2 = selfblend.make_pseudo_fakes(pixels, 0.5, seed=2)
    assert np.array_equal(idx, idx2) and np.array_equal(fakes, fakes2)
    assert len(selfblend.make_pseudo_fakes(pixels, 0.0)[0]) == 0
    # above 1: every real is used that many times, each copy blended differently
    idx3, fakes3 = selfblend.make_pseudo_fakes(pixels, 2.5, seed=2)
    assert len(idx3) == len(fakes3) == 25
    assert np.bincount(idx3, minlength=10).min() == 2 and np.bincount(idx3, minlength=10).max() == 3
    first, second = np.flatnonzero(idx3 == 0)[:2]
    assert not np.array_equal(fakes3[first], fakes3[second])


def test_down_up_scaling_softens_but_keeps_shape():
    tf = pytest.importorskip("tensorflow")
    from detector import data

    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # all high frequency
    out = data._down_up(tf.constant(img)).numpy()
    assert out.shape == img.shape and out.dtype == np.uint8
    # a lost high band: neighbouring pixels are much closer than in white noise
    assert np.abs(np.diff(out.astype(int), axis=1)).mean() < 0.7 * np.abs(np.diff(img.astype(int), axis=1)).mean()


@pytest.mark.slow
def test_training_with_self_blend_and_one_source(tiny_dataset, tmp_path, capsys):
    pytest.importorskip("keras")
    from detector.training import TrainConfig, train

    keep = SOURCES[0]
    out = tmp_path / "loso"
    card = train(TrainConfig(model="custom_cnn", data=str(tiny_dataset), out=str(out), epochs=1,
                             img_size=32, batch_size=8, verbose=0, self_blend=0.5, train_sources=[keep]))
    printed = capsys.readouterr().out
    assert "self-blend: 4 pseudo-fakes from 8 real training images" in printed  # 16 train images of one source
    assert card["training"]["self_blend"] == 0.5 and card["training"]["train_sources"] == [keep]
    preds = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert set(preds.loc[preds["split"] == "val", "source"]) == {keep}        # val: the trained source only
    assert set(preds.loc[preds["split"] == "test", "source"]) == set(SOURCES)  # test: every source
    assert set(card["metrics"]["test"]["per_source"]) == set(SOURCES)
    assert selfblend.SOURCE not in set(preds["source"])  # pseudo-fakes never reach val/test
    with pytest.raises(ValueError, match="no images of sources"):
        train(TrainConfig(model="custom_cnn", data=str(tiny_dataset), out=str(tmp_path / "x"), epochs=1,
                          img_size=32, batch_size=8, verbose=0, train_sources=["nope"]))
