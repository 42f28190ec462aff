"""The LiteRT fast path: derived from the Keras model, verified against it, used when verified."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("keras")

from detector import fastpath, inference, runfolder, store  # noqa: E402

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
    # the card vouches for the new bytes (as export-fast would record them)
    store.update_card(older, fast_path={**rec, "sha256": runfolder.sha256_bytes(
        (older / fastpath.TFLITE_FILE).read_bytes())})
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


def test_export_records_the_sha256_of_the_verified_bytes(fast_copy):
    """The card's fast_path.sha256 is the SHA-256 of model.tflite as exported and verified."""
    import hashlib

    rec = json.loads((fast_copy / "card.json").read_text())["fast_path"]
    assert rec["sha256"] == hashlib.sha256((fast_copy / fastpath.TFLITE_FILE).read_bytes()).hexdigest()


@pytest.mark.parametrize("tamper", ["one byte flipped", "swapped for another model", "appended"])
def test_a_fast_path_changed_after_export_is_refused(fast_copy, tmp_path, tamper):
    """#27 item 5: a model.tflite whose bytes are not the ones verified at export is never run:
    building the Detector raises FastPathError naming the file and the way out; the Keras
    model still loads when the fast path is not asked for; the intact copy loads."""
    folder = tmp_path / "tampered"
    shutil.copytree(fast_copy, folder)
    tflite = folder / fastpath.TFLITE_FILE
    blob = bytearray(tflite.read_bytes())
    if tamper == "one byte flipped":
        blob[len(blob) // 2] ^= 0x01
    elif tamper == "swapped for another model":  # a valid LiteRT file, just not the verified one
        size = int(json.loads((folder / "card.json").read_text())["input_size"])
        blob = bytearray(fastpath.export(store.load_keras_model(folder), size, tmp_path / "other.tflite").read_bytes())
    else:
        blob += b"\0"
    tflite.write_bytes(bytes(blob))
    with pytest.raises(fastpath.FastPathError, match="fast path refused.*export-fast"):
        inference.Detector(folder)
    assert inference.Detector(folder, use_fast_path=False).fast is None
    assert inference.Detector(fast_copy).fast is not None  # the intact original still loads


def test_cli_predict_refuses_a_tampered_fast_path_with_the_reason(fast_copy, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from detector.__main__ import main

    folder = tmp_path / "tampered_cli"
    shutil.copytree(fast_copy, folder)
    with open(folder / fastpath.TFLITE_FILE, "ab") as fh:
        fh.write(b"\0")
    Image.new("RGB", (64, 64), (90, 120, 150)).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "a.png", "--model", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "fast path refused" in err and "export-fast" in err and "Traceback" not in err


def test_a_fast_path_without_a_recorded_hash_is_not_used(fast_copy, tmp_path):
    """A card from before hashes were recorded: the file cannot be checked, so the Keras
    model scores (no error: nothing says the file changed)."""
    folder = tmp_path / "unhashed"
    shutil.copytree(fast_copy, folder)
    rec = json.loads((folder / "card.json").read_text())["fast_path"]
    store.update_card(folder, fast_path={k: v for k, v in rec.items() if k != "sha256"})
    assert inference.Detector(folder).fast is None


def test_the_runner_scores_the_checked_bytes_not_a_later_file(fast_copy, tmp_path):
    """The checked bytes are what LiteRT runs: swapping the file after the Detector was built
    changes nothing (no second read from disk)."""
    folder = tmp_path / "swap_later"
    shutil.copytree(fast_copy, folder)
    det = inference.Detector(folder)
    x = np.random.default_rng(7).integers(0, 256, (3, det.size, det.size, 3), dtype=np.uint8)
    before = det.score_batch(x)
    (folder / fastpath.TFLITE_FILE).write_bytes(b"not a model")
    det.fast._by_batch.clear()  # force new interpreters
    np.testing.assert_allclose(det.score_batch(x), before, atol=1e-6)


def test_read_checked_refuses_names_outside_the_contract(tmp_path):
    with pytest.raises(ValueError, match="not a run-folder file"):
        runfolder.read_checked(tmp_path, "../card.json", "0" * 64)


@pytest.mark.parametrize("name", store.model_names(REPO / "models"))
def test_shipped_fast_paths_agree_with_keras(name):
    folder = REPO / "models" / name
    card = store.read_card(folder)
    if not (folder / fastpath.TFLITE_FILE).is_file():
        pytest.skip(f"{name} ships no fast path")
    assert card["fast_path"]["verified"] and card["fast_path"]["verdict_mismatches"] == 0
    # the shipped file is the verified one (card's SHA-256), and the Detector's check passes
    runfolder.read_checked(folder, fastpath.TFLITE_FILE, card["fast_path"].get("sha256"))
    assert fastpath.verified_runner(card) is not None
    size = int(card["input_size"])
    x = np.random.default_rng(0).integers(0, 256, (3, size, size, 3)).astype(np.float32)
    keras_p = store.load_keras_model(folder)(x, training=False).numpy().reshape(-1)
    np.testing.assert_allclose(fastpath.LiteRTRunner(folder / fastpath.TFLITE_FILE)(x), keras_p, atol=1e-4)
