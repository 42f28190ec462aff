"""Does a verdict hold on fakes the model never saw? The cross-source matrix.

Rows say what a detector was trained on, columns what it is tested on: each source of a split
root (its `test` images) and every held-out folder (a `real/` + `fake/` folder of a generator
that no training split contains). Each cell holds the AUC, the accuracy, the share of fakes
caught (recall) and the share of real photos called fake, at the row's threshold, with 95%
intervals (`detector.significance`).

* A **frozen-feature recipe** (`--recipe dinov2`) fits a linear probe per row, so the matrix has
  one row trained on every source and one leave-one-source-out row per source (trained on all
  but that source; its cell for the left-out source is the off-diagonal number that matters).
  Regularisation and threshold come from the training sources' `val` images only; held-out
  folders and `test` are only scored.
* A **shipped model** (`--model NAME`) is scored as it is (one row: its training sources, its
  card's threshold). Its leave-one-out rows would need retraining it; they are in docs/.

An off-diagonal cell (a source or folder the row was not trained on) reads "how this detector
does on a kind of fake it never saw": near 0.5 AUC it is guessing there.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from detector import data, evaluation, novelty, significance

FeatureFn = Callable[[list[str]], np.ndarray]
MAX_TRAIN_PER_CLASS = 600  # per source and class: keeps a frozen-feature matrix to minutes
C_GRID = (0.01, 0.1, 1.0)
OFF_DIAGONAL = ("A cell off the diagonal (a source left out of training, or a held-out generator) says "
                "how the detector does on a kind of fake it never saw: AUC near 0.5 is guessing, and a "
                "high share of reals called fake means real photos of another collection get flagged.")


#: The share of reals an analyst tolerates being flagged (issue #23's goal): each cell also reads
#: how many fakes the best threshold at that rate would catch (`caught_at_10pct_fpr`).
OPERATING_FPR = 0.10
#: What the Detect page shows for a cell's images (`verdict_shares`): the share of fakes it marks
#: CANNOT JUDGE (unlike the training faces), the share of fakes it calls REAL with no warning,
#: and the share of reals it marks CANNOT JUDGE.
VERDICT_KEYS = ("cannot_judge_fake", "fake_passed_as_real", "cannot_judge_real")
#: What a card and the matrix table keep of a cell (a held-out cell keeps the AUC interval for accuracy).
SUMMARY_KEYS = ("n", "auc", "accuracy", "recall", "real_called_fake", "caught_at_10pct_fpr", *VERDICT_KEYS)
HELDOUT_KEYS = ("n", "auc", "auc_ci", "recall", "real_called_fake", "caught_at_10pct_fpr", *VERDICT_KEYS)


def _rate(k: int, n: int) -> tuple[float | None, list[float] | None]:
    if n == 0:
        return None, None
    return k / n, list(significance.accuracy_interval(k, n))


def verdict_shares(y, p, threshold: float, novelty_values=None) -> dict:
    """What an analyst is shown for these images on the Detect page: a face unlike the training
    faces gets CANNOT JUDGE (`novelty.unfamiliar`, the rule `inference.cannot_judge` applies; the
    matrix's images are face crops above the minimum size), the others REAL or FAKE at the
    threshold. So a fake the model misses is either refused with a reason or passed as real with
    no warning, and only the second misleads. A model without a novelty reference
    (`novelty_values` None) refuses nothing: every missed fake passes. Shares with 95% intervals."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    refused = np.zeros(p.shape, bool) if novelty_values is None else novelty.unfamiliar(novelty_values)
    passed = ~refused & (p < threshold)
    out = {}
    for key, hit, label in (("cannot_judge_fake", refused, 1), ("fake_passed_as_real", passed, 1),
                            ("cannot_judge_real", refused, 0)):
        out[key], out[f"{key}_ci"] = _rate(int((hit & (y == label)).sum()), int((y == label).sum()))
    return evaluation.to_jsonable(out)


def cell_metrics(y, p, threshold: float) -> dict:
    """One matrix cell: AUC, accuracy, fakes caught, reals called fake (95% intervals), and the
    fakes caught at 10% reals flagged (threshold-free, `evaluation.recall_at_fpr`)."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    m = evaluation.binary_metrics(y, p, threshold)
    fake = p >= threshold
    recall, recall_ci = _rate(int((fake & (y == 1)).sum()), int((y == 1).sum()))
    fpr, fpr_ci = _rate(int((fake & (y == 0)).sum()), int((y == 0).sum()))
    return evaluation.to_jsonable({
        "n": int(y.size), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
        "auc": m["auc"], "auc_ci": m["auc_ci"], "accuracy": m["accuracy"], "accuracy_ci": m["accuracy_ci"],
        "recall": recall, "recall_ci": recall_ci, "real_called_fake": fpr, "real_called_fake_ci": fpr_ci,
        "caught_at_10pct_fpr": evaluation.recall_at_fpr(y, p, OPERATING_FPR)})


@dataclass
class Sets:
    """The images a matrix uses: the split root's frame and one frame per held-out folder."""
    split: pd.DataFrame
    heldout: dict[str, pd.DataFrame]

    @property
    def sources(self) -> list[str]:
        return sorted(s for s in self.split["source"].unique() if s)

    @property
    def columns(self) -> list[str]:
        return [*self.sources, *self.heldout]

    def test_frame(self, column: str) -> pd.DataFrame:
        if column in self.heldout:
            return self.heldout[column]
        return self.split[(self.split["split"] == "test") & (self.split["source"] == column)]


def load_sets(root: str | os.PathLike, heldout: list[str] | None = None) -> Sets:
    """A split root (train/val/test with a MANIFEST naming sources) and held-out folders."""
    split = data.scan(root)
    if not {"train", "val", "test"} <= set(split["split"]):
        raise ValueError(f"{root}: needs train/, val/ and test/ folders")
    if not split["source"].astype(bool).any():
        split["source"] = Path(root).name  # no MANIFEST: one source named after the folder
    held = {}
    for folder in heldout or []:
        frame = data.scan(folder)
        if frame["label"].nunique() < 2:
            raise ValueError(f"{folder}: a held-out folder needs both real/ and fake/ images")
        held[Path(folder).resolve().name] = frame.assign(source=Path(folder).resolve().name)
    return Sets(split, held)


def training_subset(split: pd.DataFrame, sources: list[str], cap: int | None = MAX_TRAIN_PER_CLASS) -> pd.DataFrame:
    """The train images of `sources`, at most `cap` per source and class (a seeded sample)."""
    train = split[(split["split"] == "train") & split["source"].isin(sources)]
    if cap is None:
        return train.reset_index(drop=True)
    parts = [g.sample(n=min(len(g), cap), random_state=0) for _, g in train.groupby(["source", "label"])]
    return pd.concat(parts).reset_index(drop=True)


# --- frozen-feature recipes ------------------------------------------------------------

def cached_features(name: str, fn: Callable[[np.ndarray], np.ndarray], size: int,
                    progress: Callable[[int, int], None] | None = None) -> FeatureFn:
    """paths -> features through the one decoder and resize, cached on disk per file (the key
    holds the path, size and mtime) so a rerun or another row costs nothing. The cache folder
    is kept under its size cap (`data.trim_cache`, oldest files first, never this call's own);
    a cached file removed meanwhile by another process is simply computed again."""
    folder = data.cache_dir() / f"features_{name}"
    folder.mkdir(parents=True, exist_ok=True)

    def key(p: str) -> Path:
        st = os.stat(p)
        return folder / (hashlib.sha1(f"{p}|{st.st_size}|{int(st.st_mtime)}|{size}".encode()).hexdigest() + ".npy")

    def load(k: Path) -> np.ndarray | None:
        try:
            return np.load(k)
        except (FileNotFoundError, ValueError, EOFError, OSError):  # not cached, trimmed, or cut short
            return None

    def features(paths: list[str]) -> np.ndarray:
        keys = [key(p) for p in paths]
        out = [load(k) for k in keys]  # held here: a trim by another process cannot take them away
        todo = [i for i, f in enumerate(out) if f is None]
        for start in range(0, len(todo), 64):
            chunk = todo[start:start + 64]
            px = data.load_pixels([paths[i] for i in chunk], size, use_cache=False, progress=False)
            for i, f in zip(chunk, fn(px)):
                out[i] = f.astype("float32")
                np.save(keys[i], out[i])
            if progress:
                progress(start + len(chunk), len(todo))
        if todo:
            data.trim_cache(keep=keys)
        return np.stack(out) if keys else np.zeros((0, 0), "float32")

    return features


def dinov2_features(progress=None) -> FeatureFn:
    from detector import foundation

    foundation.model_path()  # FoundationUnavailable with the install hint, before any work
    return cached_features("dinov2", foundation.features, foundation.INPUT_SIZE, progress)


RECIPES: dict[str, Callable[..., FeatureFn]] = {"dinov2": dinov2_features}


def fit_probe(x_train, y_train, x_val, y_val):
    """Standardised logistic regression; C chosen by val AUC; threshold by val balanced accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in C_GRID:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        probe.fit(x_train, y_train)
        auc = roc_auc_score(y_val, probe.predict_proba(x_val)[:, 1])
        if best is None or auc > best[0]:
            best = (auc, c, probe)
    auc, c, probe = best
    threshold = evaluation.choose_threshold(y_val, probe.predict_proba(x_val)[:, 1])
    return probe, {"C": c, "val_auc": float(auc), "threshold": float(threshold)}


def recipe_matrix(sets: Sets, features: FeatureFn, *, cap: int | None = MAX_TRAIN_PER_CLASS,
                  leave_one_out: bool = True, say: Callable[[str], None] | None = None) -> list[dict]:
    """Rows of a frozen-feature recipe: all sources, then one per left-out source."""
    sources = sets.sources
    plans = [sources] + ([[s for s in sources if s != left] for left in sources] if leave_one_out and len(sources) > 1 else [])
    tests = {c: sets.test_frame(c) for c in sets.columns}
    test_x = {}
    for c, frame in tests.items():
        if say:
            say(f"features of {c} ({len(frame)} images)")
        test_x[c] = features(frame["path"].tolist())
    rows = []
    for trained_on in plans:
        if say:
            say(f"probe trained on {' + '.join(trained_on)}")
        train = training_subset(sets.split, trained_on, cap)
        val = sets.split[(sets.split["split"] == "val") & sets.split["source"].isin(trained_on)]
        probe, info = fit_probe(features(train["path"].tolist()), train["label"].to_numpy(),
                                features(val["path"].tolist()), val["label"].to_numpy())
        cells = {c: cell_metrics(tests[c]["label"], probe.predict_proba(test_x[c])[:, 1], info["threshold"])
                 for c in sets.columns}
        rows.append({"trained_on": trained_on, "left_out": sorted(set(sources) - set(trained_on)),
                     "n_train": len(train), **info, "cells": cells})
    return rows


# --- shipped models ---------------------------------------------------------------------

def model_matrix(sets: Sets, model: str | None = None, say: Callable[[str], None] | None = None) -> list[dict]:
    """One row: a shipped model scored as it is on every column, at its card's threshold; its
    cells also say what the Detect page shows for those images (`verdict_shares`: a recipe's
    probe is not served, so its cells do not)."""
    from detector import inference

    det = inference.load_detector(model)
    trained = sorted((((det.card.get("metrics") or {}).get("test") or {}).get("per_source") or {})) or sets.sources
    cells = {}
    for c in sets.columns:
        frame = sets.test_frame(c)
        if say:
            say(f"{det.name} on {c} ({len(frame)} images)")
        px = data.load_pixels(frame["path"].tolist(), det.size, progress=False)
        s = inference.BatchScores.concat([det.score(px[i:i + 64]) for i in range(0, len(px), 64)]) \
            if len(px) else inference.BatchScores(np.zeros(0))
        cells[c] = {**cell_metrics(frame["label"], s.p_fake, det.threshold),
                    **verdict_shares(frame["label"], s.p_fake, det.threshold, s.novelty)}
    return [{"trained_on": trained, "left_out": [], "threshold": det.threshold, "model": det.name, "cells": cells}]


def run(root, heldout: list[str] | None = None, *, model: str | None = None, recipe: str | None = None,
        cap: int | None = MAX_TRAIN_PER_CLASS, say=None) -> dict:
    """The matrix as plain data (what `--json` prints and the pages draw). A heavy job
    (`detector.jobs`): one at a time in this process."""
    from detector import jobs

    t0 = time.time()
    with jobs.heavy_job("a generalisation run"):
        sets = load_sets(root, heldout)
        if recipe:
            if recipe not in RECIPES:
                raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
            rows = recipe_matrix(sets, RECIPES[recipe](), cap=cap, say=say)
            what = {"recipe": recipe}
        else:
            rows = model_matrix(sets, model, say=say)
            what = {"model": rows[0]["model"]}
    return {**what, "data": str(Path(root).resolve()), "sources": sets.sources, "heldout": list(sets.heldout),
            "columns": sets.columns, "rows": rows, "explain": OFF_DIAGONAL, "seconds": round(time.time() - t0, 1)}


def long_frame(result: dict) -> pd.DataFrame:
    """One line per (row, column): the table behind the heatmap and its CSV."""
    out = []
    for row in result["rows"]:
        label = row_label(row)
        for col, cell in row["cells"].items():
            kind = ("held-out generator" if col in result["heldout"] else
                    "left out" if col in row["left_out"] else "seen in training")
            out.append({"trained_on": label, "tested_on": col, "kind": kind, **{k: cell.get(k) for k in SUMMARY_KEYS},
                "auc_lo": (cell.get("auc_ci") or [None, None])[0], "auc_hi": (cell.get("auc_ci") or [None, None])[1]})
    return pd.DataFrame(out)


def row_label(row: dict) -> str:
    if row.get("model"):
        return f"{row['model']} (shipped)"
    return "all sources" if not row["left_out"] else "without " + " + ".join(row["left_out"])


def heldout_summary(result: dict) -> dict:
    """The first row's held-out cells (the ones a card's `coverage` records), its worst AUC, its
    worst share of fakes caught at 10% reals flagged and its largest share of fakes passed as
    real with no warning."""
    row = result["rows"][0]
    held = {c: {k: row["cells"][c].get(k) for k in HELDOUT_KEYS} for c in result["heldout"]}

    def worst(key: str, pick=min):
        values = [v[key] for v in held.values() if v.get(key) is not None]
        return pick(values) if values else None

    return {"heldout": held, "worst_heldout_auc": worst("auc"),
            "worst_heldout_caught_at_10pct_fpr": worst("caught_at_10pct_fpr"),
            "worst_heldout_passed_as_real": worst("fake_passed_as_real", max)}


def coverage(result: dict, kinds: dict[str, str]) -> dict:
    """The card's `coverage` field from a model's matrix: what it was trained on, its held-out
    numbers, and its numbers on the shared test sources, with the command that measures them."""
    row = result["rows"][0]
    seen = {c: {k: row["cells"][c].get(k) for k in SUMMARY_KEYS} for c in result["sources"]}
    return {"trained_on": [kinds.get(s, f"{s} fakes") for s in row["trained_on"]], **heldout_summary(result),
            "shared_test": seen, "measured": time.strftime("%Y-%m-%d"),
            "command": "python -m detector generalization ../shared/data --heldout "
                       + " ".join(f"../shared/heldout/{h}" for h in result["heldout"])
                       + f" --model {result.get('model')} --record"}


def shipped_result(cards: list[dict]) -> dict:
    """The matrix of shipped models from their cards' `coverage` (one row per model that has
    one), in the shape `run` returns, so `long_frame` and the pages read it alike."""
    rows, heldout, sources = [], [], []
    for card in cards:
        cov = card.get("coverage") or {}
        if not cov.get("heldout"):
            continue
        seen, held = cov.get("shared_test") or {}, cov["heldout"]
        sources += [s for s in seen if s not in sources]
        heldout += [h for h in held if h not in heldout]
        rows.append({"model": card["name"], "trained_on": list(seen), "left_out": [], "cells": {**seen, **held}})
    return {"rows": rows, "sources": sources, "heldout": heldout, "columns": [*sources, *heldout],
            "explain": OFF_DIAGONAL}


def worst_heldout_auc(card: dict) -> float | None:
    """A card's lowest AUC on the held-out generators it was measured on (None: not measured)."""
    return (card.get("coverage") or {}).get("worst_heldout_auc")


def worst_heldout_caught(card: dict) -> float | None:
    """A card's lowest share of held-out fakes caught at 10% reals flagged (None: not measured)."""
    return (card.get("coverage") or {}).get("worst_heldout_caught_at_10pct_fpr")


def select_default(cards: list[dict]) -> str | None:
    """The selection rule for the shipped default: the model whose *worst* held-out number is
    highest (a gain on the shared split does not count if a held-out number falls). The number is
    the share of held-out fakes caught at 10% reals flagged where every candidate has it (what an
    analyst gets: issue #23's goals are stated at <= 10% reals flagged), then the worst held-out
    AUC; a higher AUC alone can come from the part of the ROC curve that flags too many reals
    (docs/generalization.md). Models without held-out numbers are not candidates."""
    measured = [c for c in cards if worst_heldout_auc(c) is not None]
    if not measured:
        return None
    by_caught = all(worst_heldout_caught(c) is not None for c in measured)
    return max(measured, key=lambda c: (worst_heldout_caught(c) if by_caught else 0.0, worst_heldout_auc(c)))["name"]


def load_result(raw: bytes | str) -> dict:
    """A matrix saved with `--json`, checked enough to draw (ValueError with the reason)."""
    import json

    try:
        result = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list) or not result["rows"]:
        raise ValueError("no rows")
    for row in result["rows"]:
        if not isinstance(row, dict) or not isinstance(row.get("cells"), dict):
            raise ValueError("a row without cells")
        row.setdefault("left_out", [])
        row.setdefault("trained_on", [])
    result.setdefault("heldout", [])
    return result
