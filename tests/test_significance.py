"""Confidence intervals and paired tests (detector.significance), checked against brute force,
textbook formulas and simulation, and where they surface: evaluation, comparison, CLI."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from detector import comparison, evaluation, significance


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval written out from its formula."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(180, 200), (0, 20), (20, 20), (1322, 1400), (3, 7)])
def test_accuracy_interval_is_wilsons(k, n):
    lo, hi = significance.accuracy_interval(k, n)
    assert (lo, hi) == pytest.approx(_wilson(k, n), abs=1e-9)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_accuracy_interval_without_images_is_nan():
    assert all(math.isnan(v) for v in significance.accuracy_interval(0, 0))


def _brute_force_delong(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """AUC and DeLong variance from every fake-real pair (O(n^2), the definition)."""
    fake, real = s[y == 1], s[y == 0]
    psi = (fake[:, None] > real[None, :]) + 0.5 * (fake[:, None] == real[None, :])
    return psi.mean(), psi.mean(axis=1).var(ddof=1) / len(fake) + psi.mean(axis=0).var(ddof=1) / len(real)


def test_delong_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    s = np.round(rng.normal(size=120) + 0.8 * y, 1)  # rounding makes ties, which count half
    auc, cov = significance.delong(y, s)
    want_auc, want_var = _brute_force_delong(y, s)
    assert auc[0] == pytest.approx(want_auc) == pytest.approx(roc_auc_score(y, s))
    assert cov[0, 0] == pytest.approx(want_var, rel=1e-9)


def test_delong_covariance_of_two_models():
    """The off-diagonal term is the covariance of the two models' placement values."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 90)
    a = rng.normal(size=90) + y
    b = a + rng.normal(scale=0.7, size=90)  # correlated with a
    _, cov = significance.delong(y, a, b)
    pa = [(a[y == 1][:, None] > a[y == 0][None, :]).astype(float), (b[y == 1][:, None] > b[y == 0][None, :]).astype(float)]
    m, n = (y == 1).sum(), (y == 0).sum()
    want = (np.cov(pa[0].mean(1), pa[1].mean(1))[0, 1] / m + np.cov(pa[0].mean(0), pa[1].mean(0))[0, 1] / n)
    assert cov[0, 1] == pytest.approx(want, rel=1e-9) and cov[0, 1] > 0
    with pytest.raises(ValueError, match="both"):
        significance.delong(np.ones(5), np.arange(5.0))


def test_auc_interval_covers_the_true_auc_about_95_percent_of_the_time():
    """Scores N(0,1) for reals and N(d,1) for fakes have AUC = Phi(d / sqrt 2); over 400 draws
    of 100 + 100 images the 95% interval must hold it roughly 95% of the time."""
    rng = np.random.default_rng(0)
    d = 1.5
    true_auc = stats.norm.cdf(d / math.sqrt(2))
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    hits = 0
    for _ in range(400):
        s = np.r_[rng.normal(size=100), rng.normal(d, size=100)]
        lo, hi = significance.auc_interval(y, s)
        hits += lo <= true_auc <= hi
    assert 0.91 <= hits / 400 <= 0.98, hits / 400


def test_auc_interval_narrows_with_more_images_and_is_nan_with_one_class():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 800):
        y = np.r_[np.zeros(n, int), np.ones(n, int)]
        s = np.r_[rng.normal(size=n), rng.normal(1.0, size=n)]
        lo, hi = significance.auc_interval(y, s)
        assert lo < roc_auc_score(y, s) < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~ 1 / sqrt(16)
    assert all(math.isnan(v) for v in significance.auc_interval(np.ones(4, int), np.arange(4.0)))


def test_paired_comparison_mcnemar_counts_only_the_discordant_images():
    """10 images both models get right, 8 only A gets right, 1 only B: exact two-sided p =
    2 * P(X <= 1 | 9, 1/2) = 20 / 512."""
    y = np.r_[np.ones(10), np.ones(8), np.zeros(1)].astype(int)
    a = np.r_[np.full(10, 0.9), np.full(8, 0.9), np.full(1, 0.9)]  # wrong on the last (a real)
    b = np.r_[np.full(10, 0.9), np.full(8, 0.1), np.full(1, 0.1)]  # wrong on the 8 fakes
    r = significance.paired_comparison(y, a, 0.5, b, 0.5)
    assert (r["only_a"], r["only_b"]) == (8, 1)
    assert r["accuracy_p"] == pytest.approx(20 / 512)
    assert r["accuracy_a"] == pytest.approx(18 / 19) and r["accuracy_b"] == pytest.approx(11 / 19)


def test_paired_comparison_of_a_model_with_itself_finds_nothing():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = 1 / (1 + np.exp(-(rng.normal(size=200) + 2 * y - 1)))
    r = significance.paired_comparison(y, s, 0.5, s, 0.5)
    assert (r["only_a"], r["only_b"], r["accuracy_p"]) == (0, 0, 1.0)
    assert r["auc_diff"] == 0 and r["auc_p"] == 1.0
    assert comparison._finding("a", "b", r) == "no real difference on these images"


def test_paired_auc_test_finds_a_real_gain_and_the_interval_holds_it():
    rng = np.random.default_rng(5)
    y = np.r_[np.zeros(300, int), np.ones(300, int)]
    signal = np.r_[np.zeros(300), np.ones(300)]
    shared = rng.normal(size=600)  # both models see the same hard images
    strong = 2.0 * signal + shared + 0.3 * rng.normal(size=600)
    weak = 1.0 * signal + shared + 0.3 * rng.normal(size=600)
    r = significance.paired_comparison(y, strong, 1.0, weak, 0.5)
    lo, hi = r["auc_diff_ci"]
    assert r["auc_a"] > r["auc_b"] and lo < r["auc_diff"] < hi and lo > 0
    assert r["auc_p"] < 1e-3
    assert r["auc_diff"] == pytest.approx(roc_auc_score(y, strong) - roc_auc_score(y, weak))


def test_binary_and_per_source_metrics_carry_the_intervals():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 300)
    s = 1 / (1 + np.exp(-(rng.normal(size=300) + 2 * y - 1)))
    src = np.where(np.arange(300) < 200, "big", "small")
    m = evaluation.binary_metrics(y, s, 0.5)
    correct = int(((s >= 0.5) == (y == 1)).sum())
    assert m["accuracy_ci"] == pytest.approx(_wilson(correct, 300), abs=1e-9)
    assert m["auc_ci"] == pytest.approx(significance.auc_interval(y, s))
    per = evaluation.per_source_metrics(y, s, src, 0.5)
    assert per["small"]["accuracy_ci"][1] - per["small"]["accuracy_ci"][0] > \
        per["big"]["accuracy_ci"][1] - per["big"]["accuracy_ci"][0]  # fewer images, wider interval
    one_class = evaluation.binary_metrics(np.ones(10, int), np.linspace(0, 1, 10), 0.5)
    assert all(math.isnan(v) for v in one_class["auc_ci"]) and not math.isnan(one_class["accuracy_ci"][0])
    assert evaluation.to_jsonable(one_class)["auc_ci"] == [None, None]


def test_pairwise_tests_use_the_images_every_model_scored():
    rng = np.random.default_rng(7)
    paths = [f"img{i}.jpg" for i in range(200)]
    label = np.where(np.arange(200) % 2 == 0, "fake", "real")
    source = np.where(np.arange(200) < 120, "gan", "swap")
    y = (label == "fake").astype(int)
    frame = lambda p: pd.DataFrame({"path": paths, "label": label, "source": source, "p_fake": p})  # noqa: E731
    good = frame(np.clip(0.5 + 0.4 * (2 * y - 1) + 0.1 * rng.normal(size=200), 0, 1))
    bad = frame(rng.uniform(size=200)).iloc[10:]  # scored 190 images only
    bad.loc[bad.index[0], "p_fake"] = np.nan  # and could not score one of them: 189 left
    also_good = frame(good["p_fake"].to_numpy())
    data = {"good": good, "bad": bad, "also_good": also_good}
    thr = {"good": 0.5, "bad": 0.5, "also_good": 0.5}
    pairs = comparison.pairwise_tests(data, thr)
    assert list(zip(pairs["model_a"], pairs["model_b"])) == [("good", "bad"), ("good", "also_good"),
                                                             ("bad", "also_good")]
    assert (pairs["n"] == 189).all()
    first = pairs.iloc[0]
    assert first["accuracy_p"] < 0.05 and first["auc_p"] < 0.05 and first["auc_diff_lo"] > 0
    assert first["finding"] == "good: more accurate, higher AUC"
    assert pairs.iloc[1]["finding"] == "no real difference on these images"
    assert pairs.iloc[2]["finding"].startswith("also_good: more accurate")
    split = {"only_a": 9, "only_b": 1, "accuracy_p": 0.02, "auc_diff": -0.05, "auc_p": 0.01}  # each wins one
    assert comparison._finding("a", "b", split) == "a: more accurate; b: higher AUC"
    gan = comparison.pairwise_tests(data, thr, source="gan")
    assert (gan["n"] == 109).all()  # 120 gan images, 11 of them not scored by "bad"
    unnamed = {m: d.drop(columns="source") for m, d in data.items()}
    assert (comparison.pairwise_tests(unnamed, thr, source="gan")["n"] == 0).all()  # no sources: no gan images


def test_intervals_frame_gives_each_models_numbers_with_their_intervals():
    y = np.r_[np.zeros(50, int), np.ones(50, int)]
    p = np.r_[np.linspace(0.0, 0.6, 50), np.linspace(0.4, 1.0, 50)]
    frame = pd.DataFrame({"path": [f"{i}.jpg" for i in range(100)], "label": np.where(y == 1, "fake", "real"),
                          "source": np.where(np.arange(100) % 4 == 0, "rare", "common"), "p_fake": p})
    spans = comparison.intervals_frame({"m": frame}, {"m": 0.5})
    acc = spans[(spans["model"] == "m") & (spans["metric"] == "accuracy")].iloc[0]
    correct = int(((p >= 0.5) == (y == 1)).sum())
    assert acc["value"] == pytest.approx(correct / 100) and acc["n"] == 100
    assert (acc["lo"], acc["hi"]) == pytest.approx(_wilson(correct, 100), abs=1e-9)
    auc = spans[spans["metric"] == "auc"].iloc[0]
    assert auc["value"] == pytest.approx(roc_auc_score(y, p)) and auc["lo"] < auc["value"] < auc["hi"]
    rare = comparison.intervals_frame({"m": frame}, {"m": 0.5}, source="rare")
    assert (rare["n"] == 25).all()
    assert (rare["hi"] - rare["lo"]).iloc[0] > (acc["hi"] - acc["lo"])  # a quarter of the images: wider
