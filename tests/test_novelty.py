"""detector.novelty: the reference that says when a face is unlike the training faces."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import REPO_ROOT
from detector import images, novelty, zoo


def _gaussian(rng, n, d=12):
    mix = np.linalg.qr(rng.normal(size=(d, d)))[0] * np.linspace(0.2, 3.0, d)  # correlated, uneven scales
    return rng.normal(size=(n, d)) @ mix + 5.0


def test_limit_flags_about_one_in_a_hundred_of_the_same_distribution_and_far_points_all():
    rng = np.random.default_rng(0)
    data = _gaussian(rng, 9000)
    ref = novelty.fit(data[:6000], data[6000:7000], ["a"])
    fresh = ref.novelty(data[7000:])
    assert 0.003 <= np.mean(fresh > 1) <= 0.03
    far = data[7000:7100] + 30.0 * rng.normal(size=(100, data.shape[1]))
    assert np.all(ref.novelty(far) > 1)
    # the whitening makes it a Mahalanobis distance: a shift along a tight direction counts more
    centre = ref.mean[None]
    cov = np.linalg.inv(ref.whiten @ ref.whiten.T)
    tight, loose = np.linalg.eigh(cov)[1][:, 0], np.linalg.eigh(cov)[1][:, -1]
    assert ref.distance(centre + tight)[0] > 5 * ref.distance(centre + loose)[0]


def test_constant_features_keep_the_fit_finite_and_save_load_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    data = _gaussian(rng, 400)
    data[:, 3] = 0.0  # a dead channel
    ref = novelty.fit(data[:300], data[300:], ("x", "y"))
    assert np.isfinite(ref.limit) and np.all(np.isfinite(ref.novelty(data)))
    ref.save(tmp_path)
    back = novelty.load(tmp_path)
    assert back.layers == ("x", "y") and back.quantile == novelty.QUANTILE
    np.testing.assert_allclose(back.novelty(data), ref.novelty(data), rtol=1e-4)
    assert novelty.load(tmp_path / "elsewhere") is None


@pytest.mark.slow
def test_every_zoo_model_names_layers_that_exist():
    for name, spec in zoo.REGISTRY.items():
        layers = zoo.novelty_layers(name, spec.gradcam_layer)
        assert layers, name
        if name.startswith(("custom", "deep", "efficientnet_lite")):
            model = spec.build(64 if "lite" in name else spec.input_size, pretrained=False)
            assert all(len(model.get_layer(layer).output.shape) == 4 for layer in layers), name
    assert zoo.novelty_layers("efficientnet_lite0_experts", "x") == zoo.get_spec("efficientnet_lite0").novelty_layers
    assert zoo.novelty_layers("someone_elses_net", "last_conv") == ("last_conv",)


def test_training_checks_the_reference_and_keeps_it_only_when_it_passes(tiny_run):
    card = json.loads((tiny_run / "card.json").read_text())
    summary = card["novelty"]
    assert summary["layers"] == list(zoo.get_spec("custom_cnn").novelty_layers)
    assert summary["n_train"] == card["data"]["counts"]["train"]["real"] + card["data"]["counts"]["train"]["fake"]
    assert summary["val_unfamiliar"] <= 0.05  # the 99th percentile of 32 val images leaves at most one
    assert set(summary["check"]) == {"blurred_unfamiliar", "noise_unfamiliar"}
    assert summary["usable"] == (min(summary["check"].values()) >= novelty.CHECK_MIN)
    assert (tiny_run / novelty.NOVELTY_FILE).is_file() == summary["usable"]
    assert summary["usable"] or "images from training faces (called unfamiliar: blurred " in summary["why_not"]


def test_a_model_blind_to_blur_and_noise_gets_no_reference(tmp_path):
    """A network that averages its input away cannot tell a smear from a face: no flag for it."""
    import keras

    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.AveragePooling2D(16, name="pool")(inputs)  # 1x1 mean colour: blur-blind
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(pooled)))
    rng = np.random.default_rng(0)
    pixels = {s: rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8) for s, n in (("train", 200), ("val", 100))}
    summary, values = novelty.fit_model(model, ["pool"], pixels, tmp_path)
    assert summary["usable"] is False and summary["check"]["blurred_unfamiliar"] < novelty.CHECK_MIN
    assert values == {}
    assert novelty.load(tmp_path) is None and summary["file"] is None
    assert summary["why_not"].startswith("its features do not tell blurred or noise images from training faces")
    kept, values = novelty.fit_model(model, ["pool"], pixels, tmp_path, require_check=False)
    assert kept["usable"] is True and novelty.load(tmp_path) is not None
    assert set(values) == {"val"} and len(values["val"]) == 100


def test_serving_reproduces_the_features_the_reference_was_fitted_on(tiny_run_novel, tiny_dataset):
    from detector import data, inference, store

    ref = novelty.load(tiny_run_novel)
    frames = data.ensure_splits(data.scan(tiny_dataset))
    pixels = data.load_pixels(frames["test"]["path"].tolist(), 32, progress=False)
    expected = ref.novelty(novelty.extractor(store.load_keras_model(tiny_run_novel), ref.layers)(pixels))
    keras_path = inference.Detector(tiny_run_novel, use_fast_path=False).score(pixels).novelty
    np.testing.assert_allclose(keras_path, expected, rtol=1e-4, atol=1e-5)
    summary = json.loads((tiny_run_novel / "card.json").read_text())["novelty"]
    assert np.mean(expected > 1) == pytest.approx(summary["test_unfamiliar"], abs=1e-3)
    result = inference.Detector(tiny_run_novel).analyze(pixels[0])
    assert result.faces[0].novelty == pytest.approx(float(expected[0]), abs=2e-3)
    # predictions.csv keeps each val/test image's novelty (the Compare page's saved predictions)
    preds = store.read_predictions(tiny_run_novel)
    test = preds[preds["split"] == "test"].set_index("path")
    np.testing.assert_allclose(test.loc[frames["test"]["rel"], "novelty"].to_numpy(), expected, rtol=1e-4, atol=1e-5)
    assert preds.loc[preds["split"] == "val", "novelty"].notna().all()


def test_a_run_without_a_kept_reference_has_no_novelty_in_its_predictions(tiny_run):
    from detector import store

    usable = json.loads((tiny_run / "card.json").read_text())["novelty"]["usable"]
    assert ("novelty" in store.read_predictions(tiny_run).columns) == usable


@pytest.fixture(scope="module")
def default_detector():
    from detector import inference, store

    if novelty.load(store.resolve(None)) is None:
        pytest.skip("the default model has no novelty reference")
    return inference.load_detector(None)


def _blurred(rgb, radius):
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


def test_the_default_model_knows_a_photo_of_a_face_but_not_a_coffee_cup_noise_or_a_smear(default_detector):
    astronaut = images.decode_image(REPO_ROOT / "sample_images" / "astronaut.jpg")
    face = default_detector.analyze(astronaut).faces[0]
    assert face.region.kind == "face" and face.novelty < 1
    coffee = default_detector.analyze(images.decode_image(REPO_ROOT / "sample_images" / "no_face_coffee.jpg"))
    assert coffee.faces[0].novelty > 1
    crop = images.resize_to(face.region.crop, default_detector.size)
    noise = np.random.default_rng(0).integers(0, 256, crop.shape, dtype=np.uint8)
    scored = default_detector.score(np.stack([crop, _blurred(crop, 8), noise])).novelty
    assert scored[0] < 1 < scored[1] and scored[2] > 1


@pytest.mark.slow
def test_the_default_model_finds_the_test_faces_familiar(default_detector):
    from detector import data, store

    if not store.SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data")
    frame = data.scan(store.SHARED_DATA / "test").groupby(["label", "source"]).head(25)
    pixels = data.load_pixels(frame["path"].tolist(), default_detector.size, progress=False)
    values = default_detector.score(pixels).novelty
    assert np.mean(values > 1) <= 0.05  # 1.4% of the 1,400 test faces when measured
    blurred = default_detector.score(np.stack([_blurred(p, 8) for p in pixels])).novelty
    assert np.mean(blurred > 1) >= 0.9
