"""Every model shipped in models/ (a folder holding card.json) is loadable, small enough to
ship, and scores exactly as its training run recorded (train/serve parity).

Collected at import time: with no trained model yet there is one skipped test. The parity
check reads a few test images of the shared dataset and skips when it is not present.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, SHARED_DATA, smooth_image

MODELS_ROOT = REPO_ROOT / "models"
MAX_MB = 25.0
PARITY_PER_CLASS = 20
PARITY_ATOL = 1e-3

MODEL_DIRS = sorted(p.parent for p in MODELS_ROOT.glob("*/card.json")) if MODELS_ROOT.is_dir() else []


def _card(folder: Path) -> dict:
    return json.loads((folder / "card.json").read_text())


def _parity_rows(preds: pd.DataFrame) -> pd.DataFrame:
    """20 real + 20 fake test rows, spread evenly over the path-sorted list (deterministic)."""
    picked = []
    for label in ("real", "fake"):
        rows = preds[(preds["split"] == "test") & (preds["label"] == label)].sort_values("path")
        if len(rows) < PARITY_PER_CLASS:
            pytest.skip(f"only {len(rows)} {label} test rows in predictions.csv")
        idx = np.linspace(0, len(rows) - 1, PARITY_PER_CLASS).round().astype(int)
        picked.append(rows.iloc[idx])
    return pd.concat(picked, ignore_index=True)


if not MODEL_DIRS:
    def test_shipped_models_present():
        pytest.skip(f"no trained models (folders with card.json) in {MODELS_ROOT} yet")

else:
    models = pytest.mark.parametrize("folder", MODEL_DIRS, ids=[d.name for d in MODEL_DIRS])
    # tests that load and run a model: the default model in the fast tier, the others in the slow one
    DEFAULT = (MODELS_ROOT / "DEFAULT").read_text().strip() if (MODELS_ROOT / "DEFAULT").is_file() else None
    loaded_models = pytest.mark.parametrize(
        "folder", [d if d.name == DEFAULT else pytest.param(d, marks=pytest.mark.slow) for d in MODEL_DIRS],
        ids=[d.name for d in MODEL_DIRS])

    @loaded_models
    def test_model_loads_safely_and_matches_card(folder):
        import keras

        from detector import layers  # noqa: F401  (custom layers must be registered, not trusted)

        card = _card(folder)
        path = folder / "model.keras"
        assert path.is_file(), f"{folder.name}: card.json without model.keras"
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        size = int(card["input_size"])
        assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, 1)
        assert card["params"] == model.count_params()
        assert card["gradcam_layer"] in {layer.name for layer in model.layers}
        assert 0.0 < card["threshold"] < 1.0 and card["temperature"] > 0

    @models
    def test_model_file_size(folder):
        card = _card(folder)
        actual_mb = (folder / "model.keras").stat().st_size / 1e6
        assert card["file_mb"] == pytest.approx(actual_mb, rel=0.10), "card.json's file_mb is stale"
        assert actual_mb <= MAX_MB, f"{folder.name}: {actual_mb:.1f} MB is over the {MAX_MB} MB limit"

    @models
    def test_run_artefacts(folder):
        from detector import store

        preds = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
        assert {"split", "path", "source", "label", "p_fake"} <= set(preds.columns)
        assert {"val", "test"} <= set(preds["split"])
        assert preds["p_fake"].between(0, 1).all()
        assert set(preds["label"]) <= {"real", "fake"}

        card = store.read_card(folder)
        assert card["name"] == folder.name and Path(card["dir"]) == folder.resolve()
        test = card["metrics"]["test"]
        assert test["n"] == int((preds["split"] == "test").sum())
        assert 0.0 <= test["accuracy"] <= 1.0
        assert (folder / "history.csv").is_file()

    @loaded_models
    def test_scores_a_generated_image(folder):
        from detector import faces, inference

        det = inference.load_detector(folder)
        rgb = smooth_image(np.random.default_rng(0), 96)
        p = det.score_crops([rgb]).p_fake
        assert p.shape == (1,) and np.isfinite(p).all() and 0.0 <= p[0] <= 1.0
        result = det.analyze(rgb, regions=[faces.whole_image_region(rgb, "no_face")])
        assert result.p_fake == pytest.approx(float(p[0]), abs=1e-6)

    @loaded_models
    def test_train_serve_parity(folder):
        """Re-decoding test images and scoring them through the serving path reproduces
        the p_fake training recorded in predictions.csv."""
        if not SHARED_DATA.is_dir():
            pytest.skip(f"shared dataset not found at {SHARED_DATA}")
        from detector import data, inference

        rows = _parity_rows(pd.read_csv(folder / "predictions.csv", keep_default_na=False))
        paths = [SHARED_DATA / p for p in rows["path"]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            pytest.skip(f"{folder.name} was trained on other data: {missing[0]} not found")
        det = inference.load_detector(folder)
        pixels = data.load_pixels([str(p) for p in paths], det.size, use_cache=False, progress=False)
        scores = det.score_batch(pixels)
        diff = np.abs(scores - rows["p_fake"].to_numpy())
        worst = int(diff.argmax())
        assert diff.max() <= PARITY_ATOL, (
            f"{rows['path'][worst]}: served {scores[worst]:.6f}, trained {rows['p_fake'][worst]:.6f}")


EXPERT_DIRS = [f for f in MODEL_DIRS if _card(f).get("training", {}).get("experts")]


@pytest.mark.parametrize("folder", EXPERT_DIRS, ids=[f.name for f in EXPERT_DIRS])
def test_router_sends_test_faces_to_their_own_sources_expert(folder):
    """A shipped experts model names, per face, the expert that judged it: on the same
    40 test images the parity check uses, that is the expert of the image's own source."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared dataset not found at {SHARED_DATA}")
    from detector import data, inference

    rows = _parity_rows(pd.read_csv(folder / "predictions.csv", keep_default_na=False))
    det = inference.load_detector(folder)
    assert det.sources == list(_card(folder)["training"]["experts"])
    pixels = data.load_pixels([str(SHARED_DATA / p) for p in rows["path"]], det.size, use_cache=False,
                              progress=False)
    gates = det.score(pixels).route
    routed = np.array(det.sources)[gates.argmax(1)]
    assert (routed == rows["source"].to_numpy()).mean() >= 0.95, list(zip(rows["path"], routed))
