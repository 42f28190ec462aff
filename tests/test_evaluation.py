"""Tests for detector.evaluation: compare against sklearn and hand-computed values."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from detector import evaluation as ev


def _random_example(seed=0, n=400):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    return y, s


def _overconfident(seed=1, n=20000):
    """True P(fake) uniform; reported scores pushed towards 0/1 (logit x4)."""
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.05, 0.95, size=n)
    y = (rng.uniform(size=n) < p_true).astype(int)
    logit = np.log(p_true / (1 - p_true))
    s = 1 / (1 + np.exp(-4 * logit))
    return y, s, p_true


def test_labels_constant():
    assert ev.LABELS == ("real", "fake")


def test_confusion_counts_hand_example():
    y = [0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.6, 0.5, 0.9, 0.4, 0.5, 0.2]
    # threshold 0.5, >= is fake: preds = 0,1,1,1,0,1,0
    c = ev.confusion_counts(y, s, 0.5)
    assert c == {"tn": 1, "fp": 2, "fn": 2, "tp": 2}
    assert all(type(v) is int for v in c.values())
    # single-class batch still gives a 2x2 layout
    assert ev.confusion_counts([1, 1], [0.9, 0.1], 0.5) == {"tn": 0, "fp": 0, "fn": 1, "tp": 1}


def test_string_labels_accepted():
    c = ev.confusion_counts(["real", "fake", "Fake"], [0.2, 0.7, 0.3], 0.5)
    assert c == {"tn": 1, "fp": 0, "fn": 1, "tp": 1}
    with pytest.raises(ValueError):
        ev.confusion_counts(["real", "banana"], [0.2, 0.7], 0.5)


def test_binary_metrics_match_sklearn():
    y, s = _random_example()
    thr = 0.45
    m = ev.binary_metrics(y, s, threshold=thr)
    pred = (s >= thr).astype(int)
    assert m["n"] == len(y)
    assert m["threshold"] == thr
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["ap"] == pytest.approx(skm.average_precision_score(y, s))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert m["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    # sanity: this example is informative but not perfect
    assert 0.7 < m["auc"] < 0.99
    for k in ("accuracy", "precision", "recall", "f1", "auc", "ap", "eer", "threshold"):
        assert type(m[k]) is float, k
    assert type(m["n"]) is int


def test_binary_metrics_precision_is_fake_class():
    # all predicted fake: precision(fake) = 1/4, recall(fake) = 1
    m = ev.binary_metrics([0, 0, 0, 1], [0.9, 0.9, 0.9, 0.9], 0.5)
    assert m["precision"] == pytest.approx(0.25)
    assert m["recall"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(0.25)


def test_binary_metrics_zero_division():
    m = ev.binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], 0.5)  # nothing predicted fake
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_eer_perfect_and_reversed():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert ev.eer(y, s) == pytest.approx(0.0)
    assert ev.eer(y, 1 - s) > 0.9


def test_eer_hand_value():
    # scores: real 0.1, 0.4 ; fake 0.35, 0.8
    # ROC points (fpr, tpr): (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    # at threshold 0.4: FPR = 0.5 and FNR = 0.5 -> EER = 0.5
    assert ev.eer([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5)
    # 1 of 4 reals scores above one of 4 fakes -> crossing at 0.25
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.65, 0.6, 0.7, 0.8, 0.9]
    assert ev.eer(y, s) == pytest.approx(0.25)


def test_eer_interpolated():
    # reals 0.5, 0.9 ; fakes 0.6, 0.7, 0.8. ROC (fpr, tpr): (0,0) (.5,0) (.5,1/3)
    # (.5,2/3) (.5,1) (1,1); FNR-FPR changes sign between (.5,1/3) and (.5,2/3),
    # where FPR stays 0.5 -> EER = 0.5
    assert ev.eer([0, 0, 1, 1, 1], [0.5, 0.9, 0.6, 0.7, 0.8]) == pytest.approx(0.5)
    # tied real/fake scores: one diagonal ROC step (0,0)->(1,1); FNR-FPR goes
    # 1 -> -1, so the interpolated crossing is at FPR = FNR = 0.5
    assert ev.eer([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    # 3 reals, 3 fakes, one diagonal step from ties: (0,0) (0,1/3) (0,2/3)
    # then tie at 0.5 (1 real, 1 fake) -> (1/3,1) ... FNR-FPR: 1/3 -> -1/3
    # crossing halfway -> EER = 1/6 (a nearest-point rule would give 0 or 1/3)
    y = [1, 1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.5, 0.5, 0.2, 0.1]
    assert ev.eer(y, s) == pytest.approx(1 / 6)


def test_eer_matches_random_rough():
    y, s = _random_example(seed=3, n=2000)
    fpr, tpr, _ = skm.roc_curve(y, s)
    i = np.argmin(np.abs((1 - tpr) - fpr))
    assert ev.eer(y, s) == pytest.approx((fpr[i] + 1 - tpr[i]) / 2, abs=0.01)


def test_one_class_gives_nan_not_exception():
    m = ev.binary_metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5)
    assert math.isnan(m["auc"]) and math.isnan(m["ap"]) and math.isnan(m["eer"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert math.isnan(ev.eer([0, 0], [0.1, 0.2]))
    assert ev.roc_points([0, 0], [0.1, 0.2]).empty
    assert ev.pr_points([0, 0], [0.1, 0.2]).empty
    assert ev.fit_temperature([1, 1], [0.3, 0.9]) == 1.0


def test_classification_report_both_classes():
    y = [0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.6, 0.5, 0.9, 0.4, 0.5, 0.2]
    r = ev.classification_report_dict(y, s, 0.5)
    # tn=1 fp=2 fn=2 tp=2
    assert r["fake"]["precision"] == pytest.approx(2 / 4)
    assert r["fake"]["recall"] == pytest.approx(2 / 4)
    assert r["real"]["precision"] == pytest.approx(1 / 3)
    assert r["real"]["recall"] == pytest.approx(1 / 3)
    assert r["real"]["support"] == 3 and r["fake"]["support"] == 4


def test_per_source_splits():
    y = [0, 1, 0, 1, 1, 1]
    s = [0.2, 0.8, 0.7, 0.6, 0.3, 0.9]
    src = ["ffhq", "ffhq", "ffhq", "ffhq", "sd", "sd"]
    ps = ev.per_source_metrics(y, s, src, 0.5)
    assert set(ps) == {"ffhq", "sd"}
    assert ps["ffhq"]["n"] == 4 and ps["sd"]["n"] == 2
    assert ps["ffhq"]["accuracy"] == pytest.approx(3 / 4)
    assert ps["ffhq"]["auc"] == pytest.approx(skm.roc_auc_score([0, 1, 0, 1], [0.2, 0.8, 0.7, 0.6]))
    assert ps["sd"]["accuracy"] == pytest.approx(1 / 2)
    assert math.isnan(ps["sd"]["auc"])  # only fakes in sd
    for key in ("precision", "recall", "f1", "eer"):
        assert key in ps["ffhq"]


def test_choose_threshold_separates():
    # separable but not at 0.5: reals <= 0.7, fakes >= 0.8
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.3, 0.6, 0.7, 0.8, 0.85, 0.95])
    for method in ("balanced_accuracy", "youden", "f1"):
        t = ev.choose_threshold(y, s, method=method)
        assert 0.7 < t <= 0.8
        assert ev.binary_metrics(y, s, t)["accuracy"] == 1.0
    assert ev.binary_metrics(y, s, 0.5)["accuracy"] < 1.0


def test_choose_threshold_tie_break_and_one_class():
    # any threshold in (0.2, 0.9] separates; 0.5 is a candidate and wins the tie
    assert ev.choose_threshold([0, 1], [0.2, 0.9]) == 0.5
    assert ev.choose_threshold([1, 1, 1], [0.1, 0.2, 0.3]) == 0.5
    with pytest.raises(ValueError):
        ev.choose_threshold([0, 1], [0.2, 0.9], method="bogus")


def test_ece_hand_value():
    # two bins of width 0.5: bin0 scores .2,.2 labels 0,1 -> |0.5-0.2|=0.3 (n=2)
    # bin1 scores .8,.8 labels 1,1 -> |1-0.8|=0.2 (n=2) -> ECE = (0.6+0.4)/4 = 0.25
    assert ev.expected_calibration_error([0, 1, 1, 1], [0.2, 0.2, 0.8, 0.8], n_bins=2) == pytest.approx(0.25)
    # unequal bins must be weighted by size: bin0 gap 0.3 (n=2), bin1 scores .8 x4
    # labels 1,1,1,0 -> gap |0.75-0.8| = 0.05 (n=4) -> (0.6 + 0.2) / 6
    ece = ev.expected_calibration_error([0, 1, 1, 1, 1, 0], [0.2, 0.2, 0.8, 0.8, 0.8, 0.8], n_bins=2)
    assert ece == pytest.approx(0.8 / 6)


def test_ece_calibrated_small_overconfident_large():
    y, s, p_true = _overconfident()
    assert ev.expected_calibration_error(y, p_true) < 0.02
    assert ev.expected_calibration_error(y, s) > 0.1


def test_temperature_scaling_reduces_ece():
    y, s, _ = _overconfident()
    T = ev.fit_temperature(y, s)
    assert T == pytest.approx(4.0, rel=0.15)  # scores were logit*4
    s_cal = ev.apply_temperature(s, T)
    assert ev.expected_calibration_error(y, s_cal) < 0.5 * ev.expected_calibration_error(y, s)
    assert ev.expected_calibration_error(y, s_cal) < 0.03
    # ranking untouched
    assert skm.roc_auc_score(y, s_cal) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-6)
    np.testing.assert_allclose(ev.apply_temperature([0.2, 0.5, 0.9], 1.0), [0.2, 0.5, 0.9], atol=1e-9)


def test_reliability_curve():
    df = ev.reliability_curve([0, 1, 1, 1], [0.2, 0.2, 0.8, 0.85], n_bins=2)
    assert list(df.columns) == ["bin_lower", "bin_upper", "mean_score", "frac_fake", "count"]
    assert df["count"].tolist() == [2, 2]
    assert df["frac_fake"].tolist() == pytest.approx([0.5, 1.0])
    assert df["mean_score"].tolist() == pytest.approx([0.2, 0.825])
    assert df["bin_upper"].tolist() == pytest.approx([0.5, 1.0])


def test_roc_pr_points_match_sklearn():
    y, s = _random_example(seed=5, n=100)
    roc = ev.roc_points(y, s)
    fpr, tpr, _ = skm.roc_curve(y, s)
    np.testing.assert_allclose(roc["fpr"], fpr)
    np.testing.assert_allclose(roc["tpr"], tpr)
    pr = ev.pr_points(y, s)
    prec, rec, _ = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(pr["precision"], prec)
    np.testing.assert_allclose(pr["recall"], rec)
    assert len(pr) == len(prec)


def test_evaluate_predictions_and_jsonable():
    df = pd.DataFrame(
        {
            "label": ["real", "fake", "real", "fake", "fake", "fake"],
            "p_fake": [0.2, 0.8, 0.7, 0.6, 0.3, 0.9],
            "source": ["ffhq", "ffhq", "ffhq", "ffhq", "sd", "sd"],
        }
    )
    out = ev.evaluate_predictions(df, 0.5)
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert set(out["per_source"]) == {"ffhq", "sd"}
    assert out["report"]["fake"]["support"] == 4
    text = json.dumps(ev.to_jsonable(out), allow_nan=False)
    assert "per_source" in text
    back = json.loads(text)
    assert back["per_source"]["sd"]["auc"] is None  # nan -> None

    # int labels, no usable source column -> no per_source
    df2 = pd.DataFrame({"label": [0, 1, 1], "p_fake": [0.1, 0.9, 0.2], "source": [None, "", None]})
    out2 = ev.evaluate_predictions(df2, 0.5)
    assert "per_source" not in out2
    assert out2["confusion"] == {"tn": 1, "fp": 0, "fn": 1, "tp": 1}


def test_to_jsonable_numpy_types():
    obj = {"a": np.float32(0.5), "b": np.int64(3), "c": np.array([1.0, np.nan]),
           "d": float("nan"), "e": (np.bool_(True), np.inf), 1: [np.float64(2.0)]}
    out = ev.to_jsonable(obj)
    assert out == {"a": 0.5, "b": 3, "c": [1.0, None], "d": None, "e": [True, None], "1": [2.0]}
    json.dumps(out, allow_nan=False)


def test_platt_fixes_a_class_that_sits_on_the_wrong_side_of_one_half():
    """Fakes scored ~0.5 and reals ~0.02: a temperature cannot fix that, a bias can."""
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 500)
    z = np.where(y == 1, rng.normal(0.0, 1.0, 1000), rng.normal(-4.0, 1.0, 1000))
    scores = 1 / (1 + np.exp(-z))
    t_only = ev.apply_temperature(scores, ev.fit_temperature(y, scores))
    T, b = ev.fit_platt(y, scores)
    both = ev.apply_temperature(scores, T, b)
    assert b > 0.5
    assert ev.expected_calibration_error(y, both) < 0.05 < ev.expected_calibration_error(y, t_only)
    assert skm.roc_auc_score(y, both) == pytest.approx(skm.roc_auc_score(y, scores))
    assert ev.fit_platt([1, 1, 1], [0.2, 0.4, 0.6]) == (1.0, 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_point_metrics_counted_by_hand_equal_sklearns(seed):
    """binary_metrics counts accuracy / precision / recall / F1 itself (speed): same numbers
    as sklearn's, one class and an empty prediction class included."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200) if seed < 3 else np.ones(50, int)
    s = rng.random(y.size)
    for t in (0.0, 0.3, 0.5, 0.9, 1.01):
        pred = (s >= t).astype(int)
        m = ev.binary_metrics(y, s, t)
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
            assert m[name] == pytest.approx(fn(y, pred, pos_label=1, labels=[0, 1], zero_division=0)), (name, t)
        tn, fp, fn_, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
        assert m["confusion"] == {"tn": tn, "fp": fp, "fn": fn_, "tp": tp}


def test_binary_metrics_is_its_threshold_and_ranking_parts():
    rng = np.random.default_rng(7)
    y, s = rng.integers(0, 2, 300), rng.random(300)
    whole = ev.binary_metrics(y, s, 0.4)
    assert whole == {**ev.threshold_metrics(y, s, 0.4), **ev.ranking_metrics(y, s)}
    assert list(whole) == ["n", "threshold", "accuracy", "accuracy_ci", "precision", "recall", "f1", "auc", "auc_ci",
                           "ap", "eer", "confusion"]
    assert set(ev.ranking_metrics(np.ones(5), s[:5])) == {"auc", "auc_ci", "ap", "eer"}
    assert math.isnan(ev.ranking_metrics(np.ones(5), s[:5])["auc"])
    assert ev.binary_metrics([], [], 0.5)["n"] == 0
