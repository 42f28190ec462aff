"""The tables and rows the Compare and Training pages show, built from cards, predictions and
history frames: metric rows with their 95% intervals as text, per-source frames, the
classification report as a table, a run folder's summary row, k-fold mean/std rows, where a
run changed phase or lowered its learning rate. Plain pandas and numpy (no Streamlit, no
plotting): the pages only lay these out, and tests check them without a page.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from detector import evaluation

INTERVAL_METRICS = ("accuracy", "auc")  # the metrics that carry a 95% interval (`*_ci`)
INTERVAL_COLUMNS = ["model", "metric", "value", "lo", "hi", "n"]
HISTOGRAM_BINS = 41  # bars of a score histogram


# --- numbers as text --------------------------------------------------------------------------

def fmt(value, digits: int = 3) -> str:
    """A number with `digits` decimals; "n/a" for a missing or non-finite one."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"


def interval(ci) -> str:
    """A 95% interval as text ("0.851-0.934"), "n/a" when there is none (one class)."""
    lo, hi = ci if ci is not None else (None, None)
    return "n/a" if fmt(lo) == "n/a" or fmt(hi) == "n/a" else f"{fmt(lo)}–{fmt(hi)}"


def with_intervals(row: dict) -> dict:
    """A metrics row with its `accuracy_ci` / `auc_ci` pairs as text columns right after the
    numbers they belong to (tables sort and export them as they read)."""
    out = {}
    for k, v in row.items():
        if k.endswith("_ci"):
            continue
        out[k] = v
        if f"{k}_ci" in row:
            out[f"{k} 95% CI"] = interval(row[f"{k}_ci"])
    return out


# --- predictions frames (split, path, source, label, p_fake) ---------------------------------

def labels01(df: pd.DataFrame) -> np.ndarray:
    """predictions.csv labels ("real"/"fake" or 0/1) -> 0/1 (1 = fake, as in evaluation)."""
    return df["label"].astype(str).str.strip().str.lower().isin(["fake", "1", "1.0", "true"]).to_numpy(int)


def frame_key(model: str, d: pd.DataFrame) -> str:
    """A cache key for one model's predictions frame: the model and a digest of its rows."""
    cols = [c for c in ("path", "source", "label", "p_fake") if c in d.columns]
    rows = pd.util.hash_pandas_object(d[cols], index=False).to_numpy()
    return f"{model}:{len(d)}:{hashlib.sha1(rows.tobytes()).hexdigest()}"


def per_source_frame(df: pd.DataFrame, threshold: float) -> pd.DataFrame | None:
    """Per-source metrics of a predictions frame (None when it has no sources)."""
    if "source" not in df.columns:
        return None
    src = df["source"].fillna("").astype(str)
    if not (src.str.strip() != "").any():
        return None
    per = evaluation.per_source_metrics(labels01(df), df["p_fake"].to_numpy(), src.to_numpy(), threshold)
    return pd.DataFrame([with_intervals({"source": k, **v}) for k, v in per.items()])


def report_frame(report: dict) -> pd.DataFrame:
    """sklearn's classification_report dict -> a tidy table (rows: classes and averages)."""
    rows = []
    for key, val in report.items():
        if isinstance(val, dict):
            rows.append({"class": key, **{k: val.get(k) for k in ("precision", "recall", "f1-score", "support")}})
        else:
            rows.append({"class": key, "precision": None, "recall": None, "f1-score": val, "support": None})
    return pd.DataFrame(rows)


def interval_rows(model: str, met: dict) -> list[dict]:
    """A forest plot's rows of one model from its binary metrics: accuracy and AUC, each with
    its 95% interval (lo, hi) and the number of images."""
    rows = []
    for metric in INTERVAL_METRICS:
        lo, hi = met[f"{metric}_ci"]
        rows.append({"model": model, "metric": metric, "value": met[metric], "lo": lo, "hi": hi, "n": met["n"]})
    return rows


def operating_point(counts: dict) -> dict:
    """Where a threshold sits on the ROC and precision-recall curves, from its confusion
    counts: fpr, tpr (= recall) and precision (1 when nothing is called fake)."""
    c = counts
    return {"fpr": c["fp"] / max(c["fp"] + c["tn"], 1), "tpr": c["tp"] / max(c["tp"] + c["fn"], 1),
            "precision": c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0}


def score_histogram(df: pd.DataFrame, bins: int = HISTOGRAM_BINS) -> dict:
    """P(fake) of the real and the fake images counted in `bins` shared bins fitted to the
    scores' range: {"centres", "width", "real", "fake"} (lists; what a bar chart draws)."""
    y = labels01(df)
    scores = df["p_fake"].to_numpy(float)
    lo, hi = float(np.nanmin(scores)), float(np.nanmax(scores))
    size = max((hi - lo) / (bins - 1), 1e-4)
    edges = lo + size * np.arange(bins + 1)
    out = {"centres": (edges[:-1] + size / 2).tolist(), "width": size}
    for cls, name in ((0, "real"), (1, "fake")):
        counts, _ = np.histogram(scores[(y == cls) & np.isfinite(scores)], bins=edges)
        out[name] = counts.tolist()
    return out


# --- the Compare page's metrics table ------------------------------------------------------------

def bench_ms(card: dict) -> float | None:
    """Single-image latency from the card's bench numbers (`python -m detector bench`), if any."""
    bench = card.get("bench") or {}
    value = bench.get("latency_ms_p50", bench.get("ms_per_image")) if isinstance(bench, dict) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def metrics_row(model: str, met: dict, ece: float, unfamiliar: float | None, threshold: float,
                ms_per_image: float | None, card: dict) -> dict:
    """One model's row of the Compare table: its metrics at `threshold` (evaluation's binary
    metrics, intervals as text), ECE, the share of unfamiliar images, its confusion counts,
    speed and what its card says of its size."""
    return {"model": model, "n": met["n"], "accuracy": met["accuracy"],
            "accuracy 95% CI": interval(met["accuracy_ci"]), "precision": met["precision"],
            "recall": met["recall"], "f1": met["f1"], "auc": met["auc"],
            "auc 95% CI": interval(met["auc_ci"]), "ap": met["ap"], "eer": met["eer"],
            "ece": ece, "unfamiliar": unfamiliar,
            **met["confusion"], "threshold": threshold, "ms_per_image": ms_per_image, "params": card.get("params"),
            "file_mb": card.get("file_mb"), "architecture": card.get("architecture"),
            "input_size": card.get("input_size")}


def metrics_frame(rows: list[dict]) -> pd.DataFrame:
    """The Compare table from `metrics_row`s; the unfamiliar column is left out when no model
    has it (no novelty reference, or predictions from before it)."""
    metrics = pd.DataFrame(rows)
    if "unfamiliar" in metrics and metrics["unfamiliar"].isna().all():
        metrics = metrics.drop(columns="unfamiliar")
    return metrics


def per_source_table(frames: dict[str, pd.DataFrame | None]) -> pd.DataFrame | None:
    """{model: per_source_frame} -> one table, the model first (None when no model has sources)."""
    parts = [per.assign(model=m) for m, per in frames.items() if per is not None]
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    return table[["model", *[c for c in table.columns if c != "model"]]]


def metrics_export(metrics: pd.DataFrame, per_source: pd.DataFrame | None, split: str) -> pd.DataFrame:
    """The Metrics CSV: the table's rows (source "ALL"), then the per-source rows, all named
    with the split they were measured on."""
    export = pd.concat([metrics.assign(source="ALL")] + ([per_source] if per_source is not None else []),
                       ignore_index=True)
    return export.assign(split=split)


# --- the Training page ---------------------------------------------------------------------------

def run_summary_row(name: str, card: dict | None, epochs_logged: int = 0) -> dict:
    """One run folder's row of the Training page's summary: what its card says of data,
    training and test numbers; a run still training (no card) shows the epochs it logged."""
    if card is None:
        return {"run": name, "model": "(training...)", "epochs_run": epochs_logged}
    c = card
    tr, counts = c.get("training") or {}, (c.get("data") or {}).get("counts") or {}
    test = (c.get("metrics") or {}).get("test") or {}
    row = {"run": name, "model": c.get("name"), "architecture": c.get("architecture"),
           "input_size": c.get("input_size"), "params": c.get("params")}
    for s in ("train", "val", "test"):
        n = counts.get(s) or {}
        row[f"{s} real/fake"] = f"{n.get('real', 0)}/{n.get('fake', 0)}" if n else ""
    row.update({"epochs_run": tr.get("epochs_run"), "phases": "+".join(tr.get("phases") or []),
                "seconds": tr.get("total_seconds"), "best_val_auc": tr.get("best_val_auc"),
                "kept_epoch": tr.get("kept_epoch"), "kept_by": tr.get("kept_by"),
                "averaged_epochs": tr.get("averaged_epochs"), "kept_average": tr.get("kept_average"),
                "test_accuracy": test.get("accuracy"), "test_auc": test.get("auc"),
                "threshold": c.get("threshold"), "kfold": c.get("kfold"), "created": c.get("created")})
    return row


FOLD_METRICS = ("accuracy", "precision", "recall", "f1", "auc", "ap", "eer")


def fold_metrics(folds: pd.DataFrame) -> list[str]:
    """The metric columns of a folds.csv."""
    return [k for k in FOLD_METRICS if k in folds]


def folds_table(folds: pd.DataFrame) -> pd.DataFrame:
    """folds.csv with a mean row and a sample standard deviation row under it."""
    num = fold_metrics(folds)
    stats = pd.DataFrame([{"fold": "mean", **folds[num].mean().to_dict()},
                          {"fold": "std", **folds[num].std(ddof=1).to_dict()}])
    return pd.concat([folds.astype({"fold": str}), stats], ignore_index=True)


def folds_line(folds: pd.DataFrame) -> str:
    """Each fold metric as "mean ± std" on one line."""
    return " · ".join(f"{k} {folds[k].mean():.3f} ± {folds[k].std(ddof=1):.3f}" for k in fold_metrics(folds))


def phase_changes(h: pd.DataFrame) -> list[tuple[float, str]]:
    """Where a history (with an `x` epoch column) enters a new phase: (x - 0.5, phase)."""
    if "phase" not in h:
        return []
    ph = h["phase"].astype(str).to_numpy()
    return [(float(h["x"].iloc[i]) - 0.5, ph[i]) for i in range(1, len(ph)) if ph[i] != ph[i - 1]]


def lr_drops(h: pd.DataFrame) -> pd.DataFrame:
    """Epochs where the learning rate fell within a phase (ReduceLROnPlateau)."""
    if "learning_rate" not in h:
        return h.iloc[0:0]
    same_phase = (h["phase"] == h["phase"].shift()) if "phase" in h else pd.Series(True, index=h.index)
    return h[(h["learning_rate"] < h["learning_rate"].shift() * 0.999) & same_phase]


def kept_point(card: dict | None) -> tuple[float, float, str] | None:
    """Where the saved weights sit on the per-source validation chart: (epoch, value, hover
    text) of the kept epoch, or of the last averaged epoch when the run kept the mean weights
    of its last epochs (--average-last); None when the card says neither."""
    tr = (card or {}).get("training") or {}
    if tr.get("kept_average"):
        last = int(str(tr["averaged_epochs"]).split("-")[-1])
        return last, tr["averaged_value"], f"kept: mean weights of epochs {tr['averaged_epochs']}, val %{{y:.3f}}"
    if tr.get("kept_by") == "val_source_auc" and tr.get("kept_epoch") is not None:
        return tr["kept_epoch"], tr["kept_value"], "kept: epoch %{x}, val %{y:.3f}"
    return None


def learning_curve_means(table: pd.DataFrame) -> pd.DataFrame:
    """A learning curve's table (one row per size and draw) -> the mean of each size."""
    return table.groupby("size").mean(numeric_only=True).drop(columns="draw").reset_index()
