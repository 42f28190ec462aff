"""Position-aware probes: a linear unit per trunk map that sees where a texture sits."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from conftest import tiny_experts_config
from detector import batching, experts, probes, training
from tests.test_experts import _sigmoid


def _halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is which half is bright (top: fake, bottom: real); both classes
    have the same mean, so globally pooled features cannot tell them apart. Mirroring (the
    training augmentation) keeps the halves."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(60, 100, (n, 16, 16, 3)).astype("float32")
    bright = np.where(y[:, None], np.arange(16)[None] < 8, np.arange(16)[None] >= 8)  # (n, rows)
    x += 80 * bright[:, :, None, None]
    return x.clip(0, 255).astype("uint8"), y


def _toy_model():
    import keras

    inp = keras.Input((16, 16, 3), name="image")
    maps = keras.layers.AveragePooling2D(4, name="maps")(inp)
    # a small seeded branch: its P stays far from 0 and 1, where float32 and float64 logits agree
    small = keras.initializers.RandomNormal(stddev=1e-3, seed=0)
    p = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=small,
                           name="branch")(keras.layers.GlobalAveragePooling2D()(maps))
    return keras.Model(inp, p)


def test_standardised_logistic_folds_the_scaling_into_raw_feature_weights():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(5, [1, 10, 0.1], (200, 3))
    score = x @ [1, 0.1, 10] + rng.normal(0, 1, 200)
    y = (score > np.median(score)).astype(int)
    coef, intercept = probes.standardised_logistic(x, y, c=1.0)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    expected = LogisticRegression(C=1.0, max_iter=3000).fit(z, y).decision_function(z)
    np.testing.assert_allclose(x @ coef[0] + intercept[0], expected, atol=1e-6)


def test_a_probe_sees_where_a_texture_is_and_the_blend_runs_inside_keras(tmp_path):
    import keras

    from detector import layers  # noqa: F401

    model = _toy_model()
    x_train, y_train = _halves(64)
    x_val, y_val = _halves(32, seed=1)
    noise = np.random.default_rng(2).normal(0, 1, 32)  # a branch that knows nothing
    fitted = probes.fit(model, ["maps"], x_train, y_train, x_val, y_val, noise, views=("whole",))

    assert fitted.summary["val_auc_probes"]["whole:maps"] > 0.99
    assert fitted.summary["val_auc_blend"] > max(0.75, fitted.summary["val_auc_branch"] + 0.2)
    pooled = x_val.reshape(32, -1, 3).mean(1)  # what a global-average-pool head sees
    assert abs(roc_auc_score(y_val, pooled.mean(1)) - 0.5) < 0.2
    assert fitted.blend == pytest.approx([1 / (2 * noise.std()), 1 / (2 * fitted.logits(
        probes.maps_of(probes.trunk_maps(model, ["maps"]), x_val))[:, 0].std())], rel=1e-4)

    blended = keras.Model(model.input, probes.attach(model, model.output, fitted, name="probes_toy"))
    path = tmp_path / "blended.keras"
    blended.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    maps = probes.maps_of(probes.trunk_maps(model, ["maps"]), x_val)
    expected = _sigmoid(fitted.blended_logit(probes.logit(batching.predict_pixels(model, x_val)), maps))
    np.testing.assert_allclose(batching.predict_pixels(reloaded, x_val), expected, atol=1e-5)


@pytest.mark.slow
def test_experts_with_probes_blend_one_branch_and_calibrate_it_on_val(tiny_dataset, tmp_path_factory):
    import keras

    from detector import data, layers  # noqa: F401

    root = tmp_path_factory.mktemp("probed")
    card = experts.train_experts(tiny_experts_config(tiny_dataset, root / "routed"), "block12_expand_conv", root / "experts",
                                 probe_sources=["beta"])
    summary = card["training"]["probes"]
    assert list(summary) == ["beta"]
    assert summary["beta"]["layers"] == ["block3_project_bn", "block5_project_bn", "block8_project_bn"]
    assert summary["beta"]["views"] == ["whole", "mosaic"]
    names = [f"{v}_{n}" for v in summary["beta"]["views"] for n in summary["beta"]["layers"]]
    assert len(summary["beta"]["blend"]) == 1 + len(names) and all(w > 0 for w in summary["beta"]["blend"])
    model = keras.saving.load_model(root / "routed" / "model.keras", safe_mode=True, compile=False)
    assert "probes_beta" in {l.name for l in model.layers}
    assert "probes_alpha" not in {l.name for l in model.layers}

    # the mixture's beta input is the probes' blend: sigmoid(blend . [branch logit, probe logits])
    x = data.load_pixels(sorted(str(p) for p in (tiny_dataset / "test").rglob("*.jpg"))[:12], 32)
    beta = keras.saving.load_model(f"{card['training']['experts']['beta']['folder']}/model.keras", compile=False)
    logits = np.column_stack([probes.logit(batching.predict_pixels(beta, x))] + [
        batching.predict_outputs(keras.Model(model.input, model.get_layer(f"probes_beta_{n}").output), x)[:, 0]
        for n in names])
    blended = batching.predict_outputs(keras.Model(model.input, model.get_layer("probes_beta").output), x)[:, 0]
    np.testing.assert_allclose(blended, _sigmoid(logits @ np.asarray(summary["beta"]["blend"])), atol=1e-5)
    assert {"temperature", "bias", "threshold"} <= set(summary["beta"])

    with pytest.raises(ValueError, match="not among the sources"):
        experts.train_experts(tiny_experts_config(tiny_dataset, root / "x"), "block12_expand_conv", root / "experts",
                              probe_sources=["gamma"])


def test_the_mosaic_tiles_the_enlarged_face_parts_and_runs_the_same_trunk_weights():
    import keras
    import tensorflow as tf

    model = _toy_model()
    x = np.random.default_rng(3).integers(0, 256, (2, 16, 16, 3)).astype("float32")
    tiles = keras.Model(model.input, probes.mosaic(model.input, "m"))(x).numpy()
    assert tiles.shape == (2, 16, 16, 3)
    for i, box in enumerate(probes.MOSAIC_TILES.values()):
        top, bottom, left, right = (round(v * 16 / 256) for v in box)
        expected = tf.image.resize(x[:, top:bottom, left:right], (8, 8), method="bilinear").numpy()
        r, c = divmod(i, 2)
        np.testing.assert_allclose(tiles[:, 8 * r:8 * r + 8, 8 * c:8 * c + 8], expected, atol=1e-4)
    whole, mosaic = probes.maps_of(probes.trunk_maps(model, ["maps"], ("whole", "mosaic")), x.astype("uint8"))
    pooled = tf.nn.avg_pool2d(tiles, 4, 4, "VALID").numpy().reshape(2, -1)  # the toy trunk on the mosaic
    np.testing.assert_allclose(mosaic, pooled, atol=1e-3)
    assert whole.shape == mosaic.shape
    with pytest.raises(ValueError, match="unknown probe view"):
        probes.probe_maps(model, ["sideways"], ["maps"], "x")


def test_probes_need_trunk_layers_and_a_model_that_names_them(tiny_dataset, tmp_path):
    from detector import zoo

    model = zoo.get_spec("efficientnet_lite0").build(32, pretrained=False)
    fitted = probes.ProbeSet(["block12_project_bn"], [np.zeros((1, 1), "float32")], [0.0], [1.0, 1.0], ["whole"])
    with pytest.raises(ValueError, match="trunk layers"):
        experts.assemble([model, model], ["a", "b"], [(1.0, 0.0)] * 2, "block9_expand_conv",
                         probe_sets={"b": fitted})
    lite1 = training.TrainConfig(model="efficientnet_lite1", data=str(tiny_dataset), out=str(tmp_path / "l1"),
                                 img_size=32, pretrained=False)
    with pytest.raises(ValueError, match="probe layers"):
        experts.train_experts(lite1, None, tmp_path / "e", probe_sources=["beta"])


def test_train_py_refuses_probes_without_experts():
    from train import main

    with pytest.raises(SystemExit, match="needs --experts"):
        main(["--model", "efficientnet_lite0", "--data", "nowhere", "--probes", "ffhq_stylegan"])


def test_logit_matches_the_served_logit_layer_even_for_saturated_scores():
    from detector.layers import Logit

    p = np.array([[0.0], [1e-9], [0.3], [0.9999999], [1.0]], dtype="float32")
    np.testing.assert_allclose(probes.logit(p[:, 0]), np.asarray(Logit()(p))[:, 0], rtol=1e-5)
