"""How sure a number is: confidence intervals and paired tests for detector metrics.

A test split of 200 StyleGAN faces measures accuracy to within about +-4 points, so two
models 2 points apart may not differ at all. These functions put that uncertainty next
to every number (CLI, cards, Compare page) and say whether two models scored on the same
images really differ. All are closed-form, deterministic and fast enough to rerun on every
threshold slider move:

* accuracy: Wilson score interval (scipy's ``binomtest(...).proportion_ci``);
* ROC AUC: DeLong's variance (DeLong et al. 1988, the fast algorithm of Sun and Xu 2014),
  normal interval clipped to [0, 1], as pROC's ``ci.auc`` does;
* two models on the same images: exact McNemar test on the images exactly one of them gets
  right, and DeLong's paired test of the AUC difference.

Inputs are plain arrays: labels 1 = fake, 0 = real; scores P(fake); fake when
score >= threshold (the conventions of ``detector.evaluation``).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
from scipy import stats

LEVEL = 0.95
_NAN = float("nan")


def accuracy_interval(n_correct: int, n: int, level: float = LEVEL) -> Tuple[float, float]:
    """Wilson score interval of a proportion (nan, nan for n = 0).

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0 or n
    correct, where small per-source splits often sit."""
    n_correct, n = int(n_correct), int(n)
    if n <= 0:
        return (_NAN, _NAN)
    # the closed form (what scipy's binomtest(...).proportion_ci(method="wilson") computes,
    # about 100x faster: the Compare page recomputes it on every threshold slider move)
    z = _z(level)
    p, z2 = n_correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * float(np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)))
    return (max(0.0, centre - half), min(1.0, centre + half))


def delong(y: np.ndarray, *scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """AUCs of one or more score vectors on the same labels, and DeLong's covariance matrix.

    Each AUC is the Mann-Whitney statistic (ties count half); its variance comes from the
    placement values: per fake, the share of reals scored below it, per real, the share of
    fakes scored above it. Needs both classes (ValueError otherwise)."""
    y = np.asarray(y).astype(int)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    fake, real = s[:, y == 1], s[:, y == 0]
    m, n = fake.shape[1], real.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong's AUC variance needs both fake and real images")
    rank_fake = stats.rankdata(fake, axis=1)
    rank_real = stats.rankdata(real, axis=1)
    rank_all = stats.rankdata(np.hstack([fake, real]), axis=1)
    auc = (rank_all[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    placement_fake = (rank_all[:, :m] - rank_fake) / n  # share of reals below each fake
    placement_real = 1.0 - (rank_all[:, m:] - rank_real) / m  # share of fakes above each real
    cov_fake = np.atleast_2d(np.cov(placement_fake)) if m > 1 else np.zeros((len(s), len(s)))
    cov_real = np.atleast_2d(np.cov(placement_real)) if n > 1 else np.zeros((len(s), len(s)))
    return auc, cov_fake / m + cov_real / n


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def auc_interval(y: np.ndarray, scores: np.ndarray, level: float = LEVEL) -> Tuple[float, float]:
    """DeLong confidence interval of the ROC AUC, clipped to [0, 1] (nan, nan with one class).

    At AUC 1.0 the variance is 0 and the interval collapses to a point: a known limit of
    DeLong's method on small, perfectly separated sets."""
    y = np.asarray(y).astype(int)
    if not ((y == 1).any() and (y == 0).any()):
        return (_NAN, _NAN)
    auc, cov = delong(y, scores)
    half = _z(level) * float(np.sqrt(max(cov[0, 0], 0.0)))
    return (max(0.0, float(auc[0]) - half), min(1.0, float(auc[0]) + half))


def paired_comparison(y: np.ndarray, scores_a: np.ndarray, threshold_a: float,
                      scores_b: np.ndarray, threshold_b: float, level: float = LEVEL) -> Dict[str, Any]:
    """Do models A and B, scored on the same images, really differ?

    Accuracy (each at its own threshold): exact McNemar test, a two-sided binomial test on
    the images exactly one model gets right (`only_a`, `only_b`); images both get right or
    both get wrong say nothing about which is better. AUC: DeLong's paired test, whose
    variance counts the correlation of the two models' errors (a paired test finds smaller
    differences than two separate intervals would). Keys: n, accuracy_a, accuracy_b,
    only_a, only_b, accuracy_p, auc_a, auc_b, auc_diff, auc_diff_ci, auc_p."""
    y = np.asarray(y).astype(int)
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"labels and scores differ in length: {y.shape}, {a.shape}, {b.shape}")
    right_a = (a >= float(threshold_a)) == (y == 1)
    right_b = (b >= float(threshold_b)) == (y == 1)
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    acc_p = float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    out: Dict[str, Any] = {
        "n": int(y.size),
        "accuracy_a": float(right_a.mean()) if y.size else _NAN,
        "accuracy_b": float(right_b.mean()) if y.size else _NAN,
        "only_a": only_a, "only_b": only_b, "accuracy_p": acc_p,
        "auc_a": _NAN, "auc_b": _NAN, "auc_diff": _NAN, "auc_diff_ci": (_NAN, _NAN), "auc_p": _NAN,
    }
    if (y == 1).any() and (y == 0).any():
        auc, cov = delong(y, a, b)
        diff = float(auc[0] - auc[1])
        sd = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
        half = _z(level) * sd
        p = float(2 * stats.norm.sf(abs(diff) / sd)) if sd > 0 else (1.0 if diff == 0 else 0.0)
        out.update(auc_a=float(auc[0]), auc_b=float(auc[1]), auc_diff=diff,
                   auc_diff_ci=(diff - half, diff + half), auc_p=p)
    return out
