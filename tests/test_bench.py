"""Tests for detector.bench: FLOPs counted by hand, and a full bench of a tiny trained model.

The tiny model (custom_cnn at 32 px, one epoch on 48 generated images) takes a few seconds
to train; the bench then runs with 2 repeats (MTCNN on the 1024x768 test photo included).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector import images

keras = pytest.importorskip("keras")

from detector import bench, layers, store  # noqa: E402
from detector.__main__ import main  # noqa: E402

KEYS = ("params", "file_mb", "gflops", "batch_ips", "latency_ms_p50", "latency_ms_p95",
        "e2e_ms_p50", "e2e_gradcam_ms_p50", "stability_ms_p50")


@pytest.fixture(scope="module")
def tiny_model(tiny_run) -> Path:
    """The shared one-epoch custom_cnn run (tests/conftest.py)."""
    return tiny_run


# --- FLOPs by hand --------------------------------------------------------------------------

def test_flops_of_conv_and_dense_by_hand():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inp)                  # 6x6x4 outputs, 3*3*3 MACs each
    x = keras.layers.Flatten()(x)                        # 144
    out = keras.layers.Dense(2)(x)                       # 144*2 MACs
    model = keras.Model(inp, out)
    assert bench.count_flops(model) == 2 * (6 * 6 * 4 * 27 + 144 * 2)
    assert not any("call" in vars(layer) for layer in model.layers)  # the wrappers are gone
    assert bench.count_flops(model) == 2 * (6 * 6 * 4 * 27 + 144 * 2)  # and it repeats


def test_flops_of_strided_depthwise_separable_and_nested_by_hand():
    inp = keras.Input((16, 16, 8))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same")(inp)   # 8x8x6 * 3*3*8
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)  # 8x8 * 3*3*6*2
    x = keras.layers.SeparableConv2D(5, 3)(x)            # 6x6 * (3*3*12 + 12*5)
    x = layers.SpatialAttention(name="att")(x)           # its own 7x7 conv: 6x6 * 7*7*2*1
    x = keras.layers.Dense(3)(x)                         # on a 4-D tensor: 6*6 * 5*3
    model = keras.Model(inp, x)
    want = (8 * 8 * 6 * 9 * 8 + 8 * 8 * 9 * 6 * 2 + 6 * 6 * (9 * 12 + 12 * 5)
            + 6 * 6 * 49 * 2 + 6 * 6 * 5 * 3)
    assert bench.count_flops(model) == 2 * want


def test_test_photo_is_a_1024px_jpeg_with_one_face():
    photo = bench.test_photo()
    rgb = images.decode_image(photo)
    assert rgb.shape == (768, 1024, 3) and photo[:3] == b"\xff\xd8\xff"
    from detector import faces

    regions = faces.find_faces(rgb)
    assert [r.kind for r in regions] == ["face"]


def test_cpu_name():
    assert bench.cpu_name().endswith(" cores")


# --- the bench on a tiny model ----------------------------------------------------------------

def test_bench_json_on_a_tiny_model(tiny_model, capsys):
    assert main(["bench", "--model", str(tiny_model), "--json", "--repeats", "2"]) == 0
    out = json.loads(capsys.readouterr().out)  # ONE JSON object on stdout
    assert set(out) >= {"models", "default", "cpu"}
    assert list(out["models"]) == [tiny_model.name]
    m = out["models"][tiny_model.name]
    for key in KEYS:
        assert m[key] > 0, key
    assert m["latency_ms_p95"] >= m["latency_ms_p50"]
    assert m["e2e_faces"] == ["face"]  # the photo was scored as one face, not as a whole image
    assert m["params"] == json.loads((tiny_model / "card.json").read_text())["params"]
    # custom_cnn at 32 px: three 3x3 convs (32, 64, 128 filters) with 2x2 pooling, Dense(1)
    macs = 32 * 32 * 32 * 27 + 16 * 16 * 64 * 9 * 32 + 8 * 8 * 128 * 9 * 64 + 128
    assert m["gflops"] == pytest.approx(2 * macs / 1e9)
    assert m["repeats"] == 2


def test_bench_every_model_under_the_models_dir(tiny_model, monkeypatch):
    monkeypatch.setattr(store, "MODELS_DIR", tiny_model.parent)
    result = bench.bench(repeats=1)
    assert list(result["models"]) == [tiny_model.name] and result["default"] == tiny_model.name
    text = bench.format_table(result)
    assert tiny_model.name in text and "GFLOPs" in text


def test_bench_without_models_fails_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(store, "MODELS_DIR", tmp_path)
    assert main(["bench"]) == 1
    assert "no trained models" in capsys.readouterr().err


def test_bench_record_writes_the_numbers_into_the_card(tiny_model, tmp_path, capsys):
    import shutil

    folder = tmp_path / "copy_of_tiny"
    shutil.copytree(tiny_model, folder)
    assert main(["bench", "--model", str(folder), "--json", "--repeats", "1"]) == 0
    assert "bench" not in json.loads((folder / "card.json").read_text())  # only with --record
    capsys.readouterr()
    assert main(["bench", "--model", str(folder), "--json", "--repeats", "1", "--record"]) == 0
    printed = json.loads(capsys.readouterr().out)["models"][folder.name]
    stored = json.loads((folder / "card.json").read_text())["bench"]
    assert stored["latency_ms_p50"] == printed["latency_ms_p50"] > 0
    assert stored["batch_ips"] == printed["batch_ips"] and stored["cpu"].endswith(" cores")
