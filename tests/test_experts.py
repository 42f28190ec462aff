"""Source experts: a trunk expert, a branch per other source, a router, one assembled model."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_experts_config
from detector import batching, experts, training
from detector.training import TrainConfig


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.slow
def test_assembled_model_is_the_router_weighted_mix_of_the_calibrated_experts(experts_run, tiny_dataset):
    import keras

    from detector import data, layers  # noqa: F401

    root, card = experts_run
    summary = card["training"]
    sources = list(summary["experts"])
    assert sorted(sources) == ["alpha", "beta"]
    assert summary["branch_settings"] == {}
    model = keras.saving.load_model(root / "routed" / "model.keras", safe_mode=True, compile=False)
    x = data.load_pixels(sorted(str(p) for p in (tiny_dataset / "test").rglob("*.jpg"))[:12], 32)

    # each expert as saved by its own run, calibrated by its own card
    calibrated = []
    for s in sources:
        folder = summary["experts"][s]["folder"]
        expert = keras.saving.load_model(f"{folder}/model.keras", safe_mode=True, compile=False)
        expert_card = json.loads(open(f"{folder}/card.json").read())
        p = np.clip(batching.predict_pixels(expert, x), 1e-7, 1 - 1e-7)
        calibrated.append(_sigmoid(np.log(p / (1 - p)) / expert_card["temperature"] + expert_card["bias"]))
    router = keras.Model(model.input, model.get_layer("router").output)
    weights = batching.predict_outputs(router, x)
    np.testing.assert_allclose(weights.sum(1), 1, atol=1e-5)
    expected = (weights * np.stack(calibrated, 1)).sum(1)
    np.testing.assert_allclose(batching.predict_pixels(model, x), expected, atol=2e-5)

    # the run folder is a normal one: calibrated and thresholded on the whole val split
    out = root / "routed"
    preds = pd.read_csv(out / "predictions.csv")
    assert set(preds["split"]) == {"val", "test"} and set(preds["source"]) == {"alpha", "beta"}
    assert card["gradcam_layer"] == "block11_project_bn"  # the trunk's last layer, in the assembled model
    assert len(model.get_layer(card["gradcam_layer"]).output.shape) == 4
    assert 0 <= summary["router_val_accuracy"] <= 1
    assert summary["recipe_seconds"] >= max(e["total_seconds"] for e in summary["experts"].values())
    history = pd.read_csv(out / "history.csv")
    assert {p.split(":")[0] for p in history["phase"]} == set(sources)
    assert history["run_epoch"].tolist() == list(range(1, len(history) + 1))


@pytest.mark.slow
def test_branches_keep_the_trunk_and_finished_experts_are_reused(experts_run, tiny_dataset, capsys):
    import keras

    root, card = experts_run
    folders = {s: e["folder"] for s, e in card["training"]["experts"].items()}
    trunk_source, branch_source = list(folders)
    trunk = keras.saving.load_model(f"{folders[trunk_source]}/model.keras", compile=False)
    branch = keras.saving.load_model(f"{folders[branch_source]}/model.keras", compile=False)
    names = [l.name for l in trunk.layers]
    cut = names.index("block12_expand_conv")
    for layer in trunk.layers[:cut]:
        for a, b in zip(layer.get_weights(), branch.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    changed = [l.name for l in trunk.layers[cut:] if l.get_weights() and any(
        not np.array_equal(a, b) for a, b in zip(l.get_weights(), branch.get_layer(l.name).get_weights()))]
    assert changed, "the branch was not fine-tuned on its own source"
    branch_card = json.loads(open(f"{folders[branch_source]}/card.json").read())
    assert branch_card["training"]["train_sources"] == [branch_source]
    assert branch_card["training"]["init_from"] == folders[trunk_source]

    mtimes = {s: (root / "experts" / s / "model.keras").stat().st_mtime for s in folders}
    capsys.readouterr()
    experts.train_experts(tiny_experts_config(tiny_dataset, root / "again"), "block12_expand_conv", root / "experts")
    assert capsys.readouterr().out.count("reusing the finished run") == 2
    assert {s: (root / "experts" / s / "model.keras").stat().st_mtime for s in folders} == mtimes


def test_assemble_refuses_experts_with_different_trunks():
    from detector import zoo

    a = zoo.build("efficientnet_lite0", 32, pretrained=False)
    b = zoo.build("efficientnet_lite0", 32, pretrained=False)  # another random init
    with pytest.raises(ValueError, match="must share every layer below"):
        experts.assemble([a, b], ["x", "y"], [(1.0, 0.0), (1.0, 0.0)], "block12_expand_conv")


def test_router_weights_reproduce_the_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    for k in (2, 3):
        labels = np.repeat(np.arange(k), 40)
        feats = rng.normal(size=(len(labels), 6)) * 3 + labels[:, None] * rng.normal(size=6) + 5
        kernel, bias = experts.router_weights(feats, labels, k)
        logits = feats @ kernel + bias
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        mean, scale = feats.mean(0), feats.std(0) + 1e-6
        ref = LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced").fit((feats - mean) / scale, labels)
        np.testing.assert_allclose(probs, ref.predict_proba((feats - mean) / scale), atol=1e-4)


def test_source_mixture_calibrates_each_expert_then_mixes():
    from detector.layers import SourceMixture

    layer = SourceMixture(sources=["a", "b"], temperatures=[2.0, 0.5], biases=[0.3, -1.0])
    router = np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]], "float32")
    pa, pb = np.array([[0.9], [0.2], [0.6]], "float32"), np.array([[0.1], [0.7], [0.95]], "float32")
    got = np.asarray(layer([router, pa, pb])).reshape(-1)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    ca, cb = _sigmoid(logit(pa[:, 0]) / 2.0 + 0.3), _sigmoid(logit(pb[:, 0]) / 0.5 - 1.0)
    np.testing.assert_allclose(got, router[:, 0] * ca + router[:, 1] * cb, atol=1e-5)
    with pytest.raises(ValueError, match="one temperature and one bias per source"):
        SourceMixture(sources=["a"], temperatures=[1.0, 1.0], biases=[0.0])


def test_init_from_starts_from_a_finished_run_and_refuses_another_architecture(tiny_run):
    from detector import zoo

    model = zoo.build("custom_cnn", 40)  # another input size: same weights
    training.load_run_weights(model, tiny_run)
    import keras

    saved = keras.saving.load_model(tiny_run / "model.keras", compile=False)
    for a, b in zip(model.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="same architecture"):
        training.load_run_weights(zoo.build("deep_cnn", 32), tiny_run)
    with pytest.raises(FileNotFoundError):
        training.load_run_weights(model, tiny_run.parent / "nothing-here")


def test_experts_need_several_sources_and_a_cached_backbone(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="two or more sources"):
        experts.train_experts(tiny_experts_config(tiny_dataset, tmp_path / "r"), "block12_expand_conv", tmp_path / "e",
                              sources=["alpha"])
    with pytest.raises(ValueError, match="backbone model"):
        experts.train_experts(TrainConfig(model="custom_cnn", data=str(tiny_dataset), out=str(tmp_path / "c")),
                              "block12_expand_conv", tmp_path / "e")


@pytest.mark.slow
def test_assembled_model_explains_and_exports_like_any_other(experts_run, tiny_dataset, tmp_path):
    import keras

    from detector import data, explain, fastpath, layers  # noqa: F401

    root, card = experts_run
    model = keras.saving.load_model(root / "routed" / "model.keras", safe_mode=True, compile=False)
    x = data.load_pixels(sorted(str(p) for p in (tiny_dataset / "val").rglob("*.jpg"))[:4], 32).astype("float32")
    maps = explain.gradcam(model, x, card["gradcam_layer"])
    assert maps.shape[0] == 4 and maps.min() >= 0 and maps.max() <= 1
    if not fastpath.available():
        pytest.skip("LiteRT is not installed")
    path = fastpath.export(model, 32, tmp_path / "model.tflite")
    assert fastpath.compare(model, fastpath.LiteRTRunner(path), x) < 1e-4  # the same scores, fast path or not


@pytest.mark.slow
def test_a_branch_cut_where_fine_tuning_starts_starts_from_the_pretrained_weights(tiny_dataset, tmp_path):
    """With ImageNet weights and the default cut, every expert starts from ImageNet (none
    from another expert) and they still share the trunk the assembled model needs."""
    card = experts.train_experts(tiny_experts_config(tiny_dataset, tmp_path / "routed", pretrained=True), None,
                                 tmp_path / "experts")
    assert card["training"]["branch_from"] == "block9_expand_conv"
    for folder in (e["folder"] for e in card["training"]["experts"].values()):
        assert json.loads(open(f"{folder}/card.json").read())["training"].get("init_from") is None
    assert card["gradcam_layer"] == "block8_project_bn"


@pytest.mark.slow
def test_a_branch_may_be_another_zoo_model_on_the_same_trunk(tiny_dataset, tmp_path):
    """`branch_settings={"model": ...}` trains that source's expert as another zoo model
    (here Lite0 cut after block 10 with a position-aware head); the assembled model carries
    its layers as the branch, reloads in safe mode and exports to the fast path unchanged."""
    import keras

    from detector import data, fastpath, layers  # noqa: F401

    card = experts.train_experts(tiny_experts_config(tiny_dataset, tmp_path / "routed", pretrained=True), None,
                                 tmp_path / "experts", branch_settings={"model": "efficientnet_lite0_pos"})
    first, second = card["training"]["experts"]
    architectures = {s: json.loads(open(f"{e['folder']}/card.json").read())["architecture"]
                     for s, e in card["training"]["experts"].items()}
    assert architectures == {first: "efficientnet_lite0", second: "efficientnet_lite0_pos"}
    model = keras.saving.load_model(tmp_path / "routed" / "model.keras", safe_mode=True, compile=False)
    branch = {layer.name for layer in model.get_layer(f"expert_{second}").layers}
    assert {"pos_conv", "pos_flatten"} <= branch and "block11_expand_conv" not in branch
    assert "block11_expand_conv" in {layer.name for layer in model.get_layer(f"expert_{first}").layers}
    x = data.load_pixels(sorted(str(p) for p in (tiny_dataset / "val").rglob("*.jpg"))[:4], 32).astype("float32")
    p = np.asarray(model.predict(x, verbose=0))
    assert p.shape == (4, 1) and np.all((p >= 0) & (p <= 1))
    if not fastpath.available():
        pytest.skip("LiteRT is not installed")
    path = fastpath.export(model, 32, tmp_path / "model.tflite")
    assert fastpath.compare(model, fastpath.LiteRTRunner(path), x) < 1e-4


def test_a_branch_model_without_the_trunk_is_refused_before_training(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="cannot share the trunk"):
        experts.train_experts(tiny_experts_config(tiny_dataset, tmp_path / "routed"), None, tmp_path / "experts",
                              branch_settings={"model": "custom_cnn"})
    assert not (tmp_path / "experts").exists()
    experts.check_branch_model("efficientnet_lite0", "efficientnet_lite0_pos", "block9_expand_conv")
    with pytest.raises(ValueError, match="cannot share the trunk"):  # the cut is past the short branch's end
        experts.check_branch_model("efficientnet_lite0", "efficientnet_lite0_pos", "block12_expand_conv")


def test_branch_settings_are_typed_training_settings():
    from train import parse_settings

    assert parse_settings(["epochs=1", "fine_tune_epochs=8", "cache_views=5", "aug-strength=0.3", "augment=false"]) == \
        {"epochs": 1, "fine_tune_epochs": 8, "cache_views": 5, "aug_strength": 0.3, "augment": False}
    assert parse_settings(["model=efficientnet_lite0_pos"]) == {"model": "efficientnet_lite0_pos"}
    for bad in (["epochs"], ["nonsense=1"], ["out=elsewhere"], ["fine_tune_from=block5_expand_conv"], ["epochs=two"],
                ["model=no_such_model"]):
        with pytest.raises(SystemExit):
            parse_settings(bad)


@pytest.mark.slow
def test_detector_tells_which_expert_judged_each_face(experts_run, tiny_dataset):
    """Serving gets the router's weights from the same forward pass: P(fake) is unchanged
    and each face names the expert with the largest weight."""
    from detector import data, evaluation, inference, report, store

    root, card = experts_run
    det = inference.Detector(root / "routed", use_fast_path=False)
    assert det.sources == list(card["training"]["experts"])
    files = sorted((tiny_dataset / "test").rglob("*.jpg"))[:6]
    x = data.load_pixels([str(p) for p in files], 32)
    scored = det.score(x)
    scores, gates = scored.p_fake, scored.route
    raw = batching.predict_pixels(store.load_keras_model(root / "routed"), x)
    np.testing.assert_allclose(scores, evaluation.apply_temperature(raw, det.temperature, det.bias), atol=1e-5)
    assert gates.shape == (6, 2)
    np.testing.assert_allclose(gates.sum(1), 1, atol=1e-5)

    result = det.analyze(x[0], regions=None)
    route = result.faces[0].route
    assert set(route) == set(det.sources)
    top, weight = report.top_route(route)
    assert weight == max(route.values()) and route[top] == weight
    assert report.route_text(route).startswith(f"judged by the {top} expert (router {weight:.0%})")
    assert report.route_text(None) == "" and report.top_route({}) is None
    assert report.route_text({"a": 0.95, "b": 0.05}) == "judged by the a expert (router 95%)"
    assert (report.route_text({"a": 0.3, "b": 0.62, "c": 0.08})
            == "judged by the b expert (router 62%), mixed with the a expert (30%)")


def test_a_single_network_has_no_router(tiny_run):
    from detector import inference, layers, store

    det = inference.Detector(tiny_run, use_fast_path=False)
    assert det.sources is None and layers.router_output(store.load_keras_model(tiny_run)) is None
    result = det.analyze(np.full((40, 40, 3), 128, np.uint8))
    assert all(f.route is None for f in result.faces)


@pytest.mark.slow
def test_an_experts_history_is_drawn_as_one_curve_per_expert(experts_run, tiny_run):
    from detector import store

    root, card = experts_run
    history = store.read_history(root / "routed")
    curves = store.history_curves("routed", history)
    sources = list(card["training"]["experts"])
    assert list(curves) == [f"routed · {s}" for s in sources]
    for s in sources:
        part = curves[f"routed · {s}"]
        assert len(part) == int((history["expert"] == s).sum())
        assert part["x"].tolist() == list(range(1, len(part) + 1))  # each expert's own epochs
        assert set(part["phase"]) <= {"head", "fine_tune"}
    single = store.read_history(tiny_run)
    (name, curve), = store.history_curves("tiny", single).items()
    assert name == "tiny" and curve["x"].tolist() == single["run_epoch"].tolist()
