"""The LiteRT fast path: derived from the Keras model, verified against it, used when verified."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("keras")

from detector import fastpath, inference, store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fast_copy(tiny_run_novel, tmp_path_factory) -> Path:
    """A copy of the tiny run (with a novelty reference) with model.tflite exported and verified
    (on random pixels: the tiny dataset's folder is recorded in its card, so on its test split
    when present)."""
    folder = tmp_path_factory.mktemp("fast") / "tiny_fast"
    shutil.copytree(tiny_run_novel, folder, ignore=shutil.ignore_patterns("logs", "checkpoints", "folds"))
    record = fastpath.export_and_verify(folder)
    assert record["verified"], record
    return folder


def test_export_and_verify_records_the_check_in_the_card(fast_copy):
    card = json.loads((fast_copy / "card.json").read_text())
    rec = card["fast_path"]
    assert rec["verified"] is True and rec["verdict_mismatches"] == 0 and rec["max_abs_diff"] < 1e-3
    assert rec["n"] > 0 and (fast_copy / fastpath.TFLITE_FILE).stat().st_size > 0


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_litert_agrees_with_keras_in_micro_batches(fast_copy, n):
    model = store.load_keras_model(fast_copy)
    size = int(json.loads((fast_copy / "card.json").read_text())["input_size"])
    x = np.random.default_rng(n).integers(0, 256, (n, size, size, 3)).astype(np.float32)
    keras_p = model(x, training=False).numpy().reshape(-1)
    for micro in (1, 2, 4):
        lite = fastpath.LiteRTRunner(fast_copy / fastpath.TFLITE_FILE, micro_batch=micro)(x)
        assert lite.shape == (n,)
        np.testing.assert_allclose(lite, keras_p, atol=1e-4)


def test_detector_uses_the_verified_fast_path_and_scores_like_keras(fast_copy):
    det = inference.Detector(fast_copy)
    assert det.fast is not None
    slow = inference.Detector(fast_copy, use_fast_path=False)
    assert slow.fast is None
    x = np.random.default_rng(3).integers(0, 256, (5, det.size, det.size, 3), dtype=np.uint8)
    np.testing.assert_allclose(det.score_batch(x), slow.score_batch(x), atol=1e-4)
    # the LiteRT copy gives P(fake) alone; novelty comes from the Keras layers below its features
    assert det.familiarity is not None
    np.testing.assert_allclose(det.score(x).novelty, slow.score(x).novelty, rtol=1e-5)


def test_the_copy_carries_the_novelty_features_and_an_older_copy_falls_back_to_keras(fast_copy, tmp_path):
    rec = json.loads((fast_copy / "card.json").read_text())["fast_path"]
    assert rec["novelty_max_abs_diff"] < 1e-3 and rec["novelty_flag_mismatches"] == 0
    det = inference.Detector(fast_copy)
    assert det.fast.has_features() and not hasattr(det, "_features")
    x = np.random.default_rng(5).integers(0, 256, (4, det.size, det.size, 3), dtype=np.uint8)
    keras_novelty = inference.Detector(fast_copy, use_fast_path=False).score(x).novelty
    older = tmp_path / "older"
    shutil.copytree(fast_copy, older)
    fastpath.export(store.load_keras_model(older), det.size, older / fastpath.TFLITE_FILE)  # P(fake) only
    old = inference.Detector(older)
    assert old.fast is not None and not old.fast.has_features()
    np.testing.assert_allclose(old.score(x).novelty, keras_novelty, rtol=1e-5)
    np.testing.assert_allclose(old.score(x).p_fake, det.score(x).p_fake, atol=1e-5)


def test_unverified_fast_path_is_not_used(fast_copy, tmp_path):
    folder = tmp_path / "unverified"
    shutil.copytree(fast_copy, folder)
    store.update_card(folder, fast_path={**json.loads((folder / "card.json").read_text())["fast_path"],
                                         "verified": False})
    assert inference.Detector(folder).fast is None


@pytest.mark.parametrize("name", store.model_names(REPO / "models"))
def test_shipped_fast_paths_agree_with_keras(name):
    folder = REPO / "models" / name
    card = store.read_card(folder)
    if not (folder / fastpath.TFLITE_FILE).is_file():
        pytest.skip(f"{name} ships no fast path")
    assert card["fast_path"]["verified"] and card["fast_path"]["verdict_mismatches"] == 0
    size = int(card["input_size"])
    x = np.random.default_rng(0).integers(0, 256, (3, size, size, 3)).astype(np.float32)
    keras_p = store.load_keras_model(folder)(x, training=False).numpy().reshape(-1)
    np.testing.assert_allclose(fastpath.LiteRTRunner(folder / fastpath.TFLITE_FILE)(x), keras_p, atol=1e-4)
