"""The CPU fast path: a LiteRT (TFLite) copy of a model run with XNNPACK.

The Keras model stays the source of truth; `model.tflite` is derived from it by `export`
and verified against it (`export_and_verify`) before the card records it, with the SHA-256
of the bytes that were verified (`fast_path.sha256`). `Detector` uses it for scoring when
present, verified and still those bytes (`verified_runner`: a file changed after export is
refused with `FastPathError`, never run); Grad-CAM still runs on the Keras model. When the
model folder has a novelty reference, the copy also outputs the reference's features, so one
LiteRT call gives both P(fake) and how familiar the face is.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np

from detector import runfolder
from detector.runfolder import TFLITE as TFLITE_FILE

log = logging.getLogger(__name__)


def export(model, size: int, path: str | Path, feature_layers=None) -> Path:
    """Convert a Keras model with a fixed (None, S, S, 3) float input to a .tflite file; with
    `feature_layers`, a second output gives their novelty features (`detector.novelty`)."""
    import keras
    import tensorflow as tf

    from detector import novelty

    if tuple(model.input_shape[1:]) != (size, size, 3):
        raise ValueError(f"model input {model.input_shape} is not ({size}, {size}, 3)")
    if feature_layers:
        model = keras.Model(model.inputs, [model.output, novelty.feature_output(model, feature_layers)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path = Path(path)
    with contextlib.redirect_stdout(sys.stderr):  # the converter chats on stdout
        path.write_bytes(converter.convert())
    return path


MICRO_BATCH = 2
"""Images per interpreter call. A big batch is run as micro-batches: at 256 px the
activations of 32 images (tens of MB) fall out of the CPU caches, two images' do not.
Measured on the 2-core machine, Lite0 at 256 px: 111 images/s in one call of 32, 129 in
micro-batches of 2 (122 of 1, 123 of 4, 113 of 8)."""


class LiteRTRunner:
    """A LiteRT interpreter over one .tflite file. Interpreters are not thread-safe and
    re-allocate when the batch size changes, so calls are serialised and one interpreter
    is kept per batch size (at most two: the micro-batch and a remainder)."""

    def __init__(self, path: str | Path, threads: int | None = None, micro_batch: int = MICRO_BATCH,
                 content: bytes | None = None):
        self.path = str(path)
        self.content = content  # the file's bytes, already checked (verified_runner): never re-read
        self.threads = threads or os.cpu_count() or 1
        self.micro_batch = max(1, int(micro_batch))
        self._by_batch: dict[int, object] = {}
        self._lock = threading.Lock()

    def _interpreter(self, n: int):
        it = self._by_batch.get(n)
        if it is None:
            from ai_edge_litert.interpreter import Interpreter

            if self.content is not None:
                it = Interpreter(model_content=self.content, num_threads=self.threads)
            else:
                it = Interpreter(model_path=self.path, num_threads=self.threads)
            inp = it.get_input_details()[0]
            it.resize_tensor_input(inp["index"], [n, *inp["shape"][1:]])
            it.allocate_tensors()
            if len(self._by_batch) > 8:  # bound memory: odd batch sizes come and go
                self._by_batch.clear()
            self._by_batch[n] = it
        return it

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        it = self._interpreter(len(batch))
        it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(batch))
        it.invoke()
        # P(fake) is the (N, 1) output; a copy exported with features has an (N, d) one too
        outs = [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]
        scores = next(o for o in outs if o.shape[-1] == 1)
        features = next((o for o in outs if o.shape[-1] != 1), None)
        return scores.reshape(-1), features

    def has_features(self) -> bool:
        """Was this copy exported with the novelty features as a second output?"""
        with self._lock:
            return len(self._interpreter(self.micro_batch).get_output_details()) > 1

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, S, S, 3) pixels -> (N raw scores, (N, d) novelty features or None), in micro-batches."""
        batch = np.asarray(batch, dtype=np.float32)
        step = self.micro_batch
        with self._lock:
            parts = [self._run(batch[i:i + step]) for i in range(0, len(batch), step)]
        if not parts:
            return np.zeros(0, np.float32), None
        features = None if parts[0][1] is None else np.concatenate([f for _, f in parts])
        return np.concatenate([p for p, _ in parts]), features

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) pixels -> N raw scores, in micro-batches."""
        return self.run(batch)[0]


def available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class FastPathError(runfolder.FileHashError):
    """A model folder's model.tflite is not the file that was verified at export: refused."""


def verified_runner(card: dict, threads: int | None = None) -> LiteRTRunner | None:
    """The LiteRT runner of a model folder's fast path (`card` as `store.read_card` gives it),
    over the file's bytes checked against the card's `fast_path.sha256`; None when there is
    no fast path to use (no file, not verified, LiteRT not installed, or a copy exported
    before hashes were recorded: the Keras model scores then, and a log line says why).
    Raises FastPathError when the file's bytes are not the verified ones: a file changed or
    swapped after export is never run, and the model is not served until it is re-exported or
    the file removed (docs/security.md)."""
    record = card.get("fast_path") or {}
    folder = Path(card["dir"])
    path = folder / TFLITE_FILE
    if not record.get("verified") or not path.is_file() or not available():
        return None
    if not record.get("sha256"):
        log.info("%s: the card records no SHA-256 of the fast path (exported before it was recorded); scoring "
                 "with the Keras model. `python -m detector export-fast --model %s` records it.", path, folder)
        return None
    try:
        content = runfolder.read_checked(folder, TFLITE_FILE, record["sha256"])
    except runfolder.FileHashError as exc:
        raise FastPathError(f"fast path refused: {exc}. Re-export it (`python -m detector export-fast --model "
                            f"{folder}`) or delete {TFLITE_FILE} to score with the Keras model.") from None
    return LiteRTRunner(path, threads, content=content)


def compare(model, runner: LiteRTRunner, batch: np.ndarray) -> float:
    """Largest |P_keras - P_litert| on a batch of uint8/float pixels."""
    keras_p = model(np.asarray(batch, np.float32), training=False).numpy().reshape(-1)
    return float(np.max(np.abs(keras_p - runner(batch))))


def export_and_verify(name_or_path=None, data_root: str | Path | None = None, n: int | None = None) -> dict:
    """Write `model.tflite` beside a model and record in its card how well it agrees with
    the Keras model: on the test images of `predictions.csv` when the data is at hand
    (same verdicts at the card threshold), else on random pixels (scores only)."""
    import pandas as pd

    from detector import data, evaluation, novelty, store

    card = store.read_card(name_or_path)
    folder = Path(card["dir"])
    size = int(card["input_size"])
    model = store.load_keras_model(folder)
    reference = novelty.load(folder)
    path = export(model, size, folder / TFLITE_FILE, reference.layers if reference else None)
    content = path.read_bytes()  # verified below and hashed: the card vouches for these bytes only
    runner = LiteRTRunner(path, content=content)

    preds = store.read_predictions(folder)
    root = Path(data_root) if data_root else Path(card.get("data", {}).get("path", ""))
    test = preds[preds["split"] == "test"] if preds is not None else pd.DataFrame()
    if n:
        test = test.head(n)
    if len(test) and root.is_dir() and all((root / p).is_file() for p in test["path"].head(5)):
        pixels = data.load_pixels([str(root / p) for p in test["path"]], size, progress=False)
        source = "test split"
    else:
        pixels = np.random.default_rng(0).integers(0, 256, (64, size, size, 3), dtype=np.uint8)
        source = "random pixels"
    keras_p = np.concatenate([model(pixels[i:i + 64].astype(np.float32), training=False).numpy().reshape(-1)
                              for i in range(0, len(pixels), 64)])
    lite = [runner.run(pixels[i:i + 64]) for i in range(0, len(pixels), 64)]
    lite_p = np.concatenate([p for p, _ in lite])
    t, b = float(card.get("temperature", 1.0)), float(card.get("bias", 0.0))
    thr = float(card.get("threshold", 0.5))
    kv = evaluation.apply_temperature(keras_p, t, b) >= thr
    lv = evaluation.apply_temperature(lite_p, t, b) >= thr
    record = {"file": TFLITE_FILE, "checked_on": source, "n": int(len(pixels)),
              "max_abs_diff": float(np.max(np.abs(keras_p - lite_p))),
              "verdict_mismatches": int(np.sum(kv != lv)),
              "file_mb": round(len(content) / 1e6, 2), "sha256": runfolder.sha256_bytes(content)}
    record["verified"] = record["max_abs_diff"] < 1e-3 and record["verdict_mismatches"] == 0
    if reference is not None:  # the copy's features must give the Keras model's novelty
        keras_n = reference.novelty(novelty.extractor(model, reference.layers)(pixels))
        lite_n = reference.novelty(np.concatenate([f for _, f in lite]))
        record["novelty_max_abs_diff"] = float(np.max(np.abs(keras_n - lite_n)))
        record["novelty_flag_mismatches"] = int(np.sum(novelty.unfamiliar(keras_n) != novelty.unfamiliar(lite_n)))
        record["verified"] = (record["verified"] and record["novelty_max_abs_diff"] < 1e-3
                              and record["novelty_flag_mismatches"] == 0)
    store.update_card(folder, fast_path=record)
    return record
