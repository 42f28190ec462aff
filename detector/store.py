"""The models/ folder: which models ship, their cards, artefacts and cached loading.

Reading cards, histories and predictions needs no TensorFlow (the comparison and training
pages draw from them alone); only `load_keras_model` imports Keras. Models load with
`safe_mode=True`. A model folder outside models/ is used only when a caller names its path.
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import pandas as pd

from detector import runfolder
from detector.runfolder import CARD, FOLDS, HISTORY, MODEL_FILE, PREDICTIONS  # the contract's names, re-exported

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("DEEPFAKE_LAB_MODELS", REPO_ROOT / "models"))  # env: tests, other dirs
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # the labelled data beside the repo, when present
DEFAULT_FILE = "DEFAULT"  # models/DEFAULT holds the default model's folder name


def _max_loaded() -> int:
    try:
        return max(1, int(os.environ.get("DEEPFAKE_LAB_MAX_MODELS", "") or 5))
    except ValueError:
        return 5


# Models held in memory at once, per process: every cache that keeps a loaded model (here, the
# Detector cache of `inference`, Grad-CAM functions of `explain`, the app's st.cache_resource)
# is a least-recently-used cache of this size, so a server that has loaded many models (model
# folders, retrained copies) holds at most this many; the next one evicts the least recently
# used. 5: the shipped models all fit (an ensemble of all five must not reload on every image).
# Each costs roughly 100-300 MB of TensorFlow memory. Env DEEPFAKE_LAB_MAX_MODELS changes it.
MAX_LOADED = _max_loaded()


class ModelNotFoundError(LookupError):
    """No such model: the message lists the shipped ones."""


def model_names(root: Path = MODELS_DIR) -> list[str]:
    """Folders under `root` that hold a card and a model, sorted with the default first."""
    if not root.is_dir():
        return []
    names = sorted(p.name for p in root.iterdir() if (p / CARD).is_file() and (p / MODEL_FILE).is_file())
    default = default_model_name(root, names)
    return sorted(names, key=lambda n: (n != default, n))


def default_model_name(root: Path = MODELS_DIR, names: list[str] | None = None) -> str | None:
    names = names if names is not None else model_names(root)
    marker = root / DEFAULT_FILE
    if marker.is_file():
        name = marker.read_text().strip()
        if name in names:
            return name
    return names[0] if names else None


def resolve(name_or_path: str | Path | None = None, root: Path = MODELS_DIR) -> Path:
    """A shipped model's name (or None for the default) -> its folder. An explicit path
    to a run folder is accepted as the user's own choice."""
    if name_or_path is None:
        name_or_path = default_model_name(root)
        if name_or_path is None:
            raise ModelNotFoundError(f"no trained models found in {root}")
    text = str(name_or_path)
    if "/" not in text and "\\" not in text and (root / text / CARD).is_file():
        return root / text
    path = Path(text).expanduser()
    if path.is_dir() and (path / CARD).is_file() and (path / MODEL_FILE).is_file():
        return path.resolve()
    known = ", ".join(model_names(root)) or "none"
    raise ModelNotFoundError(f"unknown model {text!r}: shipped models are {known}; "
                             f"or give the path of a folder holding {CARD} and {MODEL_FILE}")


class CardError(ValueError):
    """A card.json field of the wrong type or out of range; the message names the file, the
    field, what it must be and what it holds."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return _number(value) and float(value).is_integer()


# field: (what it must be, in words; the check). Fields absent from a card are not checked
# (older cards lack some); a present one must pass: a hand-edited or foreign card fails here,
# with the reason, instead of deep inside inference or a page.
CARD_FIELDS = {
    "threshold": ("a number from 0 to 1", lambda v: _number(v) and 0.0 <= v <= 1.0),
    "temperature": ("a positive number", lambda v: _number(v) and v > 0),
    "bias": ("a number", _number),
    "input_size": ("a whole number of pixels from 8 to 4096", lambda v: _integer(v) and 8 <= v <= 4096),
    "params": ("a whole number, 0 or more", lambda v: _integer(v) and v >= 0),
    "file_mb": ("a number, 0 or more", lambda v: _number(v) and v >= 0),
    "kfold": ("empty or a whole number of folds, 2 or more", lambda v: v is None or (_integer(v) and v >= 2)),
    "name": ("text", lambda v: isinstance(v, str)),
    "architecture": ("text", lambda v: isinstance(v, str)),
    "description": ("text", lambda v: isinstance(v, str)),
    "calibration": ("text", lambda v: isinstance(v, str)),
    "created": ("text", lambda v: isinstance(v, str)),
    "gradcam_layer": ("empty or a layer name", lambda v: v is None or isinstance(v, str)),
    "label_names": ("a list of names", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    **{k: ("empty or a JSON object", lambda v: v is None or isinstance(v, dict))
       for k in ("metrics", "data", "training", "novelty", "bench", "fast_path", "versions", "coverage", "recipe",
                 "clip_expert")},
}


def validate_card(card, where: str | Path = CARD) -> dict:
    """`card` when every known field present has its type and range (CARD_FIELDS); else
    CardError naming the file, the field, what it must be and what it holds."""
    if not isinstance(card, dict):
        raise CardError(f"{where}: a model card must be a JSON object, not {type(card).__name__}")
    for field, (must, ok) in CARD_FIELDS.items():
        if field in card and not ok(card[field]):
            shown = repr(card[field])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise CardError(f"{where}: field '{field}' must be {must}, not {shown}")
    return card


def read_card(name_or_path: str | Path | None = None) -> dict:
    """A model folder's card, checked (`validate_card`: CardError for a bad field), with the
    folder's `name` and `dir`."""
    folder = resolve(name_or_path)
    try:
        card = validate_card(runfolder.read_card(folder), folder / CARD)
    except json.JSONDecodeError as exc:
        raise CardError(f"{folder / CARD}: not valid JSON ({exc})") from None
    # The folder name is the handle `--model NAME` resolves, so it is the name shown
    # everywhere, even when a run folder was copied or renamed after training.
    card["name"] = folder.name
    card["dir"] = str(folder)
    return card


def update_card(name_or_path, **fields) -> dict:
    """Merge `fields` into a model's card.json on disk (the stored card, without the
    `name`/`dir` that read_card adds) and return the stored card. The one way derived
    results (calibration, fast path, bench) are recorded beside a trained model."""
    folder = resolve(name_or_path)
    return runfolder.write_card(folder, {**runfolder.read_card(folder), **fields})


def list_cards(root: Path = MODELS_DIR) -> list[dict]:
    default = default_model_name(root)
    return [{**read_card(root / n), "default": n == default} for n in model_names(root)]


def _read_csv(name_or_path, filename: str) -> pd.DataFrame | None:
    return runfolder.read_csv(resolve(name_or_path), filename)


def read_history(name_or_path=None) -> pd.DataFrame | None:
    return _read_csv(name_or_path, HISTORY)


def history_curves(name: str, history: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A run's history as the curves to draw, each with its own epoch axis `x`: one curve
    for a normal run, one per expert ("name · source", phases without the source prefix)
    for a source-experts run, whose history.csv holds its experts' runs one after another."""
    history = history.copy()
    if "expert" not in history:
        history["x"] = history["run_epoch"] if "run_epoch" in history else range(1, len(history) + 1)
        return {name: history}
    out = {}
    for expert, part in history.groupby("expert", sort=False):
        part = part.reset_index(drop=True)
        part["x"] = range(1, len(part) + 1)
        if "phase" in part:
            part["phase"] = part["phase"].astype(str).str.removeprefix(f"{expert}:")
        out[f"{name} · {expert}"] = part
    return out


def read_predictions(name_or_path=None) -> pd.DataFrame | None:
    return _read_csv(name_or_path, PREDICTIONS)


def read_folds(name_or_path=None) -> pd.DataFrame | None:
    return _read_csv(name_or_path, FOLDS)


@functools.lru_cache(maxsize=MAX_LOADED)
def _load(path: str, mtime: float):
    import keras

    from detector import layers  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(path, compile=False, safe_mode=True)


def load_keras_model(name_or_path=None):
    """The Keras model of a model folder, loaded once per process (shared; read-only)."""
    path = resolve(name_or_path) / MODEL_FILE
    return _load(str(path), path.stat().st_mtime)
