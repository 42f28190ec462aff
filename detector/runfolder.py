"""The run-folder format: the one owner of the models/ contract.

Every trained model is a folder that training writes and everything else reads:

    card.json        what the model is and how it scored (schema: `CARD_SCHEMA_VERSION`)
    model.keras      the trained model (RGB 0..255 in, P(fake) out)
    predictions.csv  split, path, source, label, p_fake, p_raw (+ novelty, + fold)
    history.csv      one row per epoch
    folds.csv        per-fold metrics (k-fold runs)
    novelty.npz      the reference that says how unlike the training faces an input is
    clip_expert.npz  a linear probe on frozen CLIP features that stands in for one expert of a
                     source-experts model (optional; `detector.clip_expert`)
    model.tflite     the verified LiteRT copy (optional; the card's fast_path.sha256 is the
                     SHA-256 of the bytes that were verified, checked by `read_checked` on load)
    robustness.csv   accuracy under degradations (optional)

A card's `recipe` is how the run was made: the recipe file it came from (`recipes/NAME.toml`,
None when options alone were given) and, for runs trained since, its resolved settings
(`recipe_entry`), which read back as a recipe (`detector.recipes.from_card`).

`detector.training` writes through this module and `detector.store` reads through it, so a
file name or a column is defined once. Core layer: no TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from detector.data import CLASS_NAMES

CARD = "card.json"
MODEL_FILE = "model.keras"
PREDICTIONS = "predictions.csv"
HISTORY = "history.csv"
FOLDS = "folds.csv"
ROBUSTNESS = "robustness.csv"
NOVELTY = "novelty.npz"
CLIP_EXPERT = "clip_expert.npz"
TFLITE = "model.tflite"
FILES = (CARD, MODEL_FILE, PREDICTIONS, HISTORY, FOLDS, ROBUSTNESS, NOVELTY, CLIP_EXPERT, TFLITE)

# Version of card.json's layout. A card without "schema_version" is version 1 (every card
# written before the field existed). Raise it when a field changes meaning or is removed, so
# an older reader refuses a newer card instead of misreading it.
CARD_SCHEMA_VERSION = 1
PREDICTION_COLUMNS = ["split", "path", "source", "label", "p_fake", "p_raw"]  # + novelty, fold


class CardSchemaError(ValueError):
    """A card written by a newer version of the format than this code reads."""


class FileHashError(ValueError):
    """A run-folder file whose bytes are not the ones its card recorded (changed or swapped
    after it was written and checked)."""


def is_run_folder(folder: str | Path) -> bool:
    """A folder holding a card and a model: what `store` lists and resolves."""
    folder = Path(folder)
    return (folder / CARD).is_file() and (folder / MODEL_FILE).is_file()


def read_card(folder: str | Path) -> dict:
    """The card as stored (no `name`/`dir`, which `store.read_card` adds)."""
    card = json.loads((Path(folder) / CARD).read_text())
    version = int(card.get("schema_version", 1))
    if version > CARD_SCHEMA_VERSION:
        raise CardSchemaError(f"{Path(folder) / CARD} has card schema {version}; this code reads up to "
                              f"{CARD_SCHEMA_VERSION}: update Deepfake Lab")
    return card


def write_card(folder: str | Path, card: dict) -> dict:
    """Write card.json (values made JSON-safe), stamped with the schema version when the
    card has none; returns what was written."""
    from detector.evaluation import to_jsonable

    card = {**card, "schema_version": int(card.get("schema_version", CARD_SCHEMA_VERSION))}
    card = to_jsonable(card)
    (Path(folder) / CARD).write_text(json.dumps(card, indent=2))
    return card


def recipe_entry(file: str | None, settings: dict, experts: dict | None = None) -> dict:
    """The card's `recipe` field: the recipe file (None: none was used), the run's resolved
    settings and, for a source-experts run, its experts table. None values are left out, as
    a TOML recipe cannot hold them, so the entry is a recipe as it stands."""
    entry = {"file": file, "settings": {k: v for k, v in settings.items() if v is not None}}
    if experts is not None:
        entry["experts"] = {k: v for k, v in experts.items() if v is not None}
    return entry


def read_csv(folder: str | Path, filename: str, **kwargs) -> pd.DataFrame | None:
    """One of the folder's tables, None when the run has no such file."""
    path = Path(folder) / filename
    return pd.read_csv(path, **kwargs) if path.is_file() else None


def write_predictions(preds: pd.DataFrame, folder: str | Path) -> None:
    """predictions.csv: split, path, source, label (real/fake), p_fake, p_raw (+ novelty when
    the model has a novelty reference, + fold)."""
    preds = preds.copy()
    if pd.api.types.is_numeric_dtype(preds["label"]):
        preds["label"] = preds["label"].map(dict(enumerate(CLASS_NAMES)))
    cols = list(PREDICTION_COLUMNS)
    if "novelty" in preds:
        cols.append("novelty")
    if "fold" in preds:
        preds["fold"] = preds["fold"].astype("Int64")
        cols.append("fold")
    preds[cols].to_csv(Path(folder) / PREDICTIONS, index=False, float_format="%.6f")


def sha256_bytes(data: bytes) -> str:
    """SHA-256 of `data` as 64 lower-case hex digits: what a card records for a derived file
    (the fast path's `fast_path.sha256`)."""
    return hashlib.sha256(data).hexdigest()


def read_checked(folder: str | Path, filename: str, sha256: str | None) -> bytes:
    """The bytes of `folder/filename` when their SHA-256 is `sha256` (as the card recorded it
    at export); FileHashError otherwise, a missing record included. Read once and returned, so
    the caller uses the very bytes that were checked (no second read a swap could slip into).
    `filename` is the caller's (one of FILES), never a name taken from the card."""
    if filename not in FILES:
        raise ValueError(f"not a run-folder file: {filename!r}")
    path = Path(folder) / filename
    if not isinstance(sha256, str) or not sha256.strip():
        raise FileHashError(f"{path}: the card records no SHA-256 for it, so it cannot be checked")
    data = path.read_bytes()
    actual = sha256_bytes(data)
    if actual != sha256.strip().lower():
        raise FileHashError(f"{path} is not the file its card recorded: SHA-256 {actual[:16]}... instead of "
                            f"{sha256.strip()[:16]}... (changed or swapped after it was exported and verified)")
    return data
