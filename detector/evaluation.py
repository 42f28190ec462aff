"""Evaluation metrics for Deepfake Lab, computed in ONE place.

The CLI, the training cards and the dashboard all import from here so that a
number called "accuracy" or "EER" means exactly the same thing everywhere.

Conventions (used by every function below):

* label 1 = fake (the positive class), 0 = real;
* scores are P(fake) in [0, 1];
* an image is predicted fake when ``score >= threshold``.

Only numpy / pandas / scikit-learn / scipy are used so this module can be
imported without TensorFlow or Streamlit (e.g. in tests or a light CLI).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Optional

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from detector import significance

__all__ = [
    "LABELS",
    "confusion_counts",
    "eer",
    "recall_at_fpr",
    "binary_metrics",
    "classification_report_dict",
    "per_source_metrics",
    "choose_threshold",
    "expected_calibration_error",
    "reliability_curve",
    "fit_temperature",
    "apply_temperature",
    "roc_points",
    "pr_points",
    "evaluate_predictions",
    "to_jsonable",
]

#: Class names indexed by integer label (0 = real, 1 = fake).
LABELS = ("real", "fake")

_EPS = 1e-6
_NAN = float("nan")


# --------------------------------------------------------------------------- #
# Input normalisation
# --------------------------------------------------------------------------- #
def _as_labels(y_true: Iterable[Any]) -> np.ndarray:
    """Return labels as an int array of 0/1.

    Accepts 0/1 ints, booleans or the strings "real"/"fake" (any case) so the
    callers never have to remember which form a CSV happened to use.
    """
    arr = np.asarray(list(y_true) if not hasattr(y_true, "__len__") else y_true)
    arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=int)
    if arr.dtype.kind in "OUS":
        mapping = {name: i for i, name in enumerate(LABELS)}
        mapping.update({"0": 0, "1": 1})
        out = np.empty(arr.size, dtype=int)
        for i, v in enumerate(arr):
            if isinstance(v, (int, np.integer, bool, np.bool_)) and int(v) in (0, 1):
                out[i] = int(v)
                continue
            key = str(v).strip().lower()
            if key not in mapping:
                raise ValueError(f"unknown label {v!r}; expected 0/1 or one of {LABELS}")
            out[i] = mapping[key]
        return out
    if arr.dtype.kind == "f" and np.any(np.isnan(arr)):
        raise ValueError("labels contain NaN")
    out = arr.astype(int)
    if not np.all((out == 0) | (out == 1)) or (arr.dtype.kind == "f" and np.any(out != arr)):
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return out


def _as_scores(scores: Iterable[Any], n: Optional[int] = None) -> np.ndarray:
    """Return scores as a 1-D float array, checking length against the labels."""
    s = np.asarray(scores, dtype=float).reshape(-1)
    if n is not None and s.size != n:
        raise ValueError(f"y_true has {n} items but scores has {s.size}")
    if np.any(np.isnan(s)):
        raise ValueError("scores contain NaN")
    return s


def _prepare(y_true, scores):
    y = _as_labels(y_true)
    s = _as_scores(scores, y.size)
    return y, s


def _both_classes(y: np.ndarray) -> bool:
    """Ranking metrics (AUC, AP, EER) are undefined unless both classes occur."""
    return y.size > 0 and 0 < int(y.sum()) < y.size


def _predict(scores: np.ndarray, threshold: float) -> np.ndarray:
    return (scores >= threshold).astype(int)


# --------------------------------------------------------------------------- #
# Point metrics
# --------------------------------------------------------------------------- #
def confusion_counts(y_true, scores, threshold: float = 0.5) -> Dict[str, int]:
    """Confusion-matrix counts with fake as the positive class.

    ``labels=[0, 1]`` is forced so the 2x2 layout is stable even when a batch
    contains a single class.
    """
    y, s = _prepare(y_true, scores)
    if y.size == 0:
        return {"tn": 0, "fp": 0, "fn": 0, "tp": 0}
    # plain counting (sklearn's confusion_matrix gives the same numbers, ~50x slower: its
    # input checks dominate, and the Compare page recounts on every slider move)
    fake, called = y == 1, _predict(s, threshold) == 1
    return {"tn": int((~fake & ~called).sum()), "fp": int((~fake & called).sum()),
            "fn": int((fake & ~called).sum()), "tp": int((fake & called).sum())}


def eer(y_true, scores) -> float:
    """Equal error rate: the operating point where FPR == FNR.

    Threshold-free, so it compares detectors independently of calibration.
    Linearly interpolated between the two ROC points that bracket the
    crossing. Returns nan when one class is missing (undefined).
    """
    y, s = _prepare(y_true, scores)
    if not _both_classes(y):
        return _NAN
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # starts at +1 (fpr=0, fnr=1), ends at -1; non-increasing
    idx = np.flatnonzero(diff <= 0)
    i = int(idx[0])
    if i == 0 or diff[i] == 0:
        return float(fpr[i])
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1)
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def recall_at_fpr(y_true, scores, max_fpr: float = 0.10) -> float:
    """The largest share of fakes caught by any threshold that calls at most `max_fpr` of the
    reals fake: a point read off the ROC curve.

    Threshold-free like the AUC, but it looks only at the part of the curve an analyst can use
    (few reals flagged): two detectors with the same AUC can catch very different shares there,
    and a higher AUC can come with fewer fakes caught at 10% reals flagged. It is a readout, not
    a threshold to ship (that one comes from val). nan when one class is missing.
    """
    y, s = _prepare(y_true, scores)
    if not _both_classes(y):
        return _NAN
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def threshold_metrics(y_true, scores, threshold: float = 0.5) -> Dict[str, Any]:
    """The part of `binary_metrics` that depends on the threshold: n, threshold, accuracy with
    its 95% interval (Wilson), precision / recall / f1 of the fake class, and the confusion
    counts. Cheap (counting): what a threshold slider recomputes."""
    y, s = _prepare(y_true, scores)
    threshold = float(threshold)
    conf = confusion_counts(y, s, threshold)
    out: Dict[str, Any] = {"n": int(y.size), "threshold": threshold}
    if y.size == 0:
        out.update(accuracy=_NAN, accuracy_ci=(_NAN, _NAN), precision=_NAN, recall=_NAN, f1=_NAN, confusion=conf)
        return out
    # from the counts, as sklearn's accuracy/precision/recall/f1 (pos_label=1, zero_division=0)
    # define them, without their per-call input checks
    tp, fp, fn = conf["tp"], conf["fp"], conf["fn"]
    correct = conf["tn"] + tp
    out["accuracy"] = correct / y.size
    out["accuracy_ci"] = significance.accuracy_interval(correct, y.size)
    out["precision"] = tp / (tp + fp) if tp + fp else 0.0
    out["recall"] = tp / (tp + fn) if tp + fn else 0.0
    out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    out["confusion"] = conf
    return out


def ranking_metrics(y_true, scores) -> Dict[str, Any]:
    """The part of `binary_metrics` that does not depend on the threshold: auc with its 95%
    interval (DeLong), ap and eer; nan (and a nan interval) unless both classes occur."""
    y, s = _prepare(y_true, scores)
    if not _both_classes(y):
        return {"auc": _NAN, "auc_ci": (_NAN, _NAN), "ap": _NAN, "eer": _NAN}
    return {"auc": float(skm.roc_auc_score(y, s)), "auc_ci": significance.auc_interval(y, s),
            "ap": float(skm.average_precision_score(y, s)), "eer": eer(y, s)}


def binary_metrics(y_true, scores, threshold: float = 0.5) -> Dict[str, Any]:
    """Headline metrics for a fake-vs-real detector as plain Python numbers:
    `threshold_metrics` and `ranking_metrics` together.

    precision/recall/f1 are for the fake class (what a detector is judged
    on). auc/ap/eer are nan rather than an exception when only one class is
    present, so evaluating a single-source folder never crashes the caller.
    accuracy_ci / auc_ci are 95% intervals (Wilson; DeLong), see `detector.significance`.
    """
    y, s = _prepare(y_true, scores)
    point = threshold_metrics(y, s, threshold)
    conf = point.pop("confusion")
    return {**point, **ranking_metrics(y, s), "confusion": conf}


def classification_report_dict(y_true, scores, threshold: float = 0.5) -> Dict[str, Any]:
    """sklearn's classification report (both classes) as a dict.

    Gives per-class precision/recall so a detector that is good on fakes but
    flags many real images is visible.
    """
    y, s = _prepare(y_true, scores)
    return skm.classification_report(
        y,
        _predict(s, threshold),
        labels=[0, 1],
        target_names=list(LABELS),
        output_dict=True,
        zero_division=0,
    )


def per_source_metrics(y_true, scores, sources, threshold: float = 0.5) -> Dict[str, Dict[str, Any]]:
    """Metrics split by data source (e.g. generator or dataset name).

    Deepfake detectors often generalise unevenly across generators; an
    overall number hides that. Missing/empty source names are grouped as
    "unknown". Keys: n, n_real, n_fake, accuracy, accuracy_ci, precision, recall, f1,
    auc, auc_ci, eer (auc/eer nan for single-class sources).
    """
    y, s = _prepare(y_true, scores)
    src = pd.Series(list(sources) if not hasattr(sources, "__len__") else sources, dtype=object)
    if len(src) != y.size:
        raise ValueError(f"y_true has {y.size} items but sources has {len(src)}")
    names = np.array(
        ["unknown" if (v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "")
         else str(v).strip() for v in src],
        dtype=object,
    )
    result: Dict[str, Dict[str, Any]] = {}
    for name in sorted(set(names)):
        mask = names == name
        bm = binary_metrics(y[mask], s[mask], threshold)
        result[name] = {
            "n": bm["n"],
            "n_real": int((y[mask] == 0).sum()),
            "n_fake": int((y[mask] == 1).sum()),
            "accuracy": bm["accuracy"],
            "accuracy_ci": bm["accuracy_ci"],
            "precision": bm["precision"],
            "recall": bm["recall"],
            "f1": bm["f1"],
            "auc": bm["auc"],
            "auc_ci": bm["auc_ci"],
            "eer": bm["eer"],
        }
    return result


# --------------------------------------------------------------------------- #
# Threshold selection
# --------------------------------------------------------------------------- #
def choose_threshold(y_true, scores, method: str = "balanced_accuracy") -> float:
    """Pick a decision threshold on validation data.

    The default 0.5 is wrong when the model is mis-calibrated or the classes
    are imbalanced; maximising balanced accuracy (== Youden's J) fixes that
    without favouring the majority class. "f1" maximises fake-class F1.
    Candidates are midpoints between consecutive unique scores plus 0.5;
    ties go to the candidate closest to 0.5 (least surprising). Returns 0.5
    when only one class is present (nothing to separate).
    """
    method = method.lower()
    if method not in ("balanced_accuracy", "youden", "f1"):
        raise ValueError(f"unknown method {method!r}; use 'balanced_accuracy', 'youden' or 'f1'")
    y, s = _prepare(y_true, scores)
    if not _both_classes(y):
        return 0.5
    uniq = np.unique(s)
    cands = np.unique(np.concatenate([(uniq[:-1] + uniq[1:]) / 2.0, [0.5]]))
    pos = np.sort(s[y == 1])
    neg = np.sort(s[y == 0])
    # counts of scores >= t, vectorised via binary search (O(n log n))
    tp = pos.size - np.searchsorted(pos, cands, side="left")
    fp = neg.size - np.searchsorted(neg, cands, side="left")
    fn = pos.size - tp
    tn = neg.size - fp
    if method in ("balanced_accuracy", "youden"):
        obj = 0.5 * (tp / pos.size + tn / neg.size)
    else:
        denom = 2 * tp + fp + fn
        obj = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    best = obj.max()
    ties = cands[np.isclose(obj, best, rtol=0, atol=1e-12)]
    return float(ties[np.argmin(np.abs(ties - 0.5))])


# --------------------------------------------------------------------------- #
# Calibration
# --------------------------------------------------------------------------- #
def _bin_index(s: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin index in [0, n_bins); a score of exactly 1.0 goes to the last bin."""
    return np.clip(np.floor(np.clip(s, 0.0, 1.0) * n_bins).astype(int), 0, n_bins - 1)


def expected_calibration_error(y_true, scores, n_bins: int = 15) -> float:
    """ECE of P(fake): sum_b |mean(y_b) - mean(p_b)| * n_b / N over equal-width bins.

    Tells whether a score of 0.8 really means "80% of such images are fake",
    which matters when the dashboard shows scores as probabilities.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    y, s = _prepare(y_true, scores)
    if y.size == 0:
        return _NAN
    b = _bin_index(s, n_bins)
    counts = np.bincount(b, minlength=n_bins)
    sum_y = np.bincount(b, weights=y.astype(float), minlength=n_bins)
    sum_p = np.bincount(b, weights=s, minlength=n_bins)
    nz = counts > 0
    gap = np.abs(sum_y[nz] / counts[nz] - sum_p[nz] / counts[nz])
    return float(np.sum(gap * counts[nz]) / y.size)


def reliability_curve(y_true, scores, n_bins: int = 10) -> pd.DataFrame:
    """Per-bin mean score vs. observed fraction of fakes, for reliability plots.

    Only non-empty bins are returned (empty bins have no defined mean and
    would break line plots); ``count`` says how much each point is worth.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    y, s = _prepare(y_true, scores)
    cols = ["bin_lower", "bin_upper", "mean_score", "frac_fake", "count"]
    if y.size == 0:
        return pd.DataFrame(columns=cols)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = _bin_index(s, n_bins)
    counts = np.bincount(b, minlength=n_bins)
    sum_y = np.bincount(b, weights=y.astype(float), minlength=n_bins)
    sum_p = np.bincount(b, weights=s, minlength=n_bins)
    nz = np.flatnonzero(counts > 0)
    return pd.DataFrame(
        {
            "bin_lower": edges[nz],
            "bin_upper": edges[nz + 1],
            "mean_score": sum_p[nz] / counts[nz],
            "frac_fake": sum_y[nz] / counts[nz],
            "count": counts[nz].astype(int),
        },
        columns=cols,
    ).reset_index(drop=True)


def logit(s: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), p clipped away from 0 and 1: the inverse of `sigmoid`."""
    p = np.clip(np.asarray(s, dtype=float), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)



def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), numerically stable."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # numerically stable


def apply_temperature(scores, T: float, bias: float = 0.0) -> np.ndarray:
    """Rescale P(fake) as sigmoid(logit(p) / T + bias).

    T > 1 softens over-confident scores, T < 1 sharpens them; `bias` shifts them (Platt
    scaling when fitted with T). The ranking (and so AUC/EER) is unchanged.
    """
    T = float(T)
    if not np.isfinite(T) or T <= 0:
        raise ValueError("temperature must be a positive finite number")
    return sigmoid(logit(scores) / T + float(bias))


def fit_temperature(y_true, scores, bounds=(-4.0, 4.0)) -> float:
    """Fit the temperature T that minimises binary log loss on validation data.

    Temperature scaling is the simplest post-hoc calibration: one parameter,
    cannot change accuracy at 0.5 or AUC. Optimises over log T (within
    ``bounds``) so T stays positive. Returns 1.0 when there is nothing to fit
    (empty input, one class, all logits zero) or the optimiser fails.
    """
    from scipy.optimize import minimize_scalar

    y, s = _prepare(y_true, scores)
    if not _both_classes(y):
        return 1.0
    z = logit(s)
    if np.allclose(z, 0.0):
        return 1.0
    yf = y.astype(float)

    def nll(log_t: float) -> float:
        a = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, a) - yf * a))

    try:
        res = minimize_scalar(nll, bounds=bounds, method="bounded")
    except Exception:  # pragma: no cover - defensive
        return 1.0
    if not res.success or not np.isfinite(res.x):
        return 1.0
    # never return something worse than doing nothing
    if nll(res.x) > nll(0.0):
        return 1.0
    return float(math.exp(res.x))


def fit_platt(y_true, scores) -> tuple[float, float]:
    """Fit (T, bias) of `apply_temperature` by minimising log loss on validation data.

    A temperature alone cannot move scores that sit on the wrong side of 0.5 for a whole
    class (a model that gives fakes 0.5 and reals 0.02 stays miscalibrated); the bias can.
    Returns (1.0, 0.0) when there is nothing to fit or the fit is no better than nothing.
    """
    from scipy.optimize import minimize

    y, s = _prepare(y_true, scores)
    if not _both_classes(y):
        return 1.0, 0.0
    z, yf = logit(s), y.astype(float)

    def nll(params) -> float:
        a = z / math.exp(params[0]) + params[1]
        return float(np.mean(np.logaddexp(0.0, a) - yf * a))

    res = minimize(nll, x0=[0.0, 0.0], method="L-BFGS-B", bounds=[(-4.0, 4.0), (-20.0, 20.0)])
    if not np.all(np.isfinite(res.x)) or nll(res.x) > nll([0.0, 0.0]):
        return 1.0, 0.0
    return float(math.exp(res.x[0])), float(res.x[1])


# --------------------------------------------------------------------------- #
# Curves for plots
# --------------------------------------------------------------------------- #
def roc_points(y_true, scores) -> pd.DataFrame:
    """ROC curve points (fpr, tpr, threshold) straight from sklearn.

    The first threshold is +inf (sklearn's "predict nothing fake" point).
    Empty frame when one class is missing (the curve is undefined).
    """
    y, s = _prepare(y_true, scores)
    if not _both_classes(y):
        return pd.DataFrame(columns=["fpr", "tpr", "threshold"], dtype=float)
    fpr, tpr, thr = skm.roc_curve(y, s)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


def pr_points(y_true, scores) -> pd.DataFrame:
    """Precision-recall curve points for the fake class, from sklearn.

    sklearn returns one fewer threshold than points; the final point
    (recall 0, precision 1) gets threshold nan. Empty frame when one class
    is missing.
    """
    y, s = _prepare(y_true, scores)
    if not _both_classes(y):
        return pd.DataFrame(columns=["precision", "recall", "threshold"], dtype=float)
    prec, rec, thr = skm.precision_recall_curve(y, s)
    thr = np.concatenate([thr, np.full(prec.size - thr.size, np.nan)])
    return pd.DataFrame({"precision": prec, "recall": rec, "threshold": thr})


# --------------------------------------------------------------------------- #
# DataFrame entry point and JSON helper
# --------------------------------------------------------------------------- #
def evaluate_predictions(df: pd.DataFrame, threshold: float = 0.5) -> Dict[str, Any]:
    """Full evaluation of a predictions table (columns label, p_fake[, source]).

    This is the one call the CLI, training cards and dashboard make, so they
    all report identical numbers. ``per_source`` is included only when a
    source column with at least one non-empty value exists.
    """
    for col in ("label", "p_fake"):
        if col not in df.columns:
            raise ValueError(f"predictions table needs a {col!r} column")
    y = _as_labels(df["label"].to_numpy())
    s = _as_scores(df["p_fake"].to_numpy(), y.size)
    out = binary_metrics(y, s, threshold)
    if "source" in df.columns:
        src = df["source"]
        has_value = src.notna() & (src.astype(str).str.strip() != "")
        if bool(has_value.any()):
            out["per_source"] = per_source_metrics(y, s, src.to_numpy(), threshold)
    out["report"] = classification_report_dict(y, s, threshold)
    return out


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy/pandas values to plain Python; nan/inf -> None.

    JSON has no NaN, and ``json.dumps`` would otherwise emit invalid
    ``NaN`` tokens or fail on numpy scalars.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    return obj
