"""detector.summaries: the tables and rows the Compare and Training pages show, checked
without a page (counted by hand or against evaluation / comparison)."""
import math

import numpy as np
import pandas as pd
import pytest

from detector import comparison, evaluation, summaries


def frame(labels, scores, sources=None) -> pd.DataFrame:
    d = pd.DataFrame({"path": [f"{i}.png" for i in range(len(labels))], "label": labels, "p_fake": scores})
    if sources is not None:
        d["source"] = sources
    return d


PREDS = frame(["real", "real", "fake", "fake", "fake", "real"], [0.1, 0.7, 0.8, 0.4, 0.9, 0.2],
              ["ffhq", "ffhq", "stylegan", "stylegan", "sd", ""])


def test_numbers_and_intervals_as_text():
    assert summaries.fmt(0.12345) == "0.123" and summaries.fmt(2, 1) == "2.0"
    assert [summaries.fmt(v) for v in (None, "x", float("nan"), float("inf"))] == ["n/a"] * 4
    assert summaries.interval((0.1234, 0.9)) == "0.123–0.900"
    assert summaries.interval(None) == "n/a" and summaries.interval((float("nan"), 0.5)) == "n/a"
    row = summaries.with_intervals({"source": "a", "accuracy": 0.5, "accuracy_ci": (0.25, 0.75), "n": 4,
                                    "auc": float("nan"), "auc_ci": (float("nan"), float("nan"))})
    assert list(row) == ["source", "accuracy", "accuracy 95% CI", "n", "auc", "auc 95% CI"]
    assert row["accuracy 95% CI"] == "0.250–0.750" and row["auc 95% CI"] == "n/a"


def test_labels_read_every_spelling_of_fake():
    d = pd.DataFrame({"label": ["fake", " FAKE ", "real", 1, 0, "1.0", "true", "other"]})
    assert summaries.labels01(d).tolist() == [1, 1, 0, 1, 0, 1, 1, 0]


def test_per_source_frame_counts_each_source():
    per = summaries.per_source_frame(PREDS, 0.5).set_index("source")
    assert sorted(per.index) == ["ffhq", "sd", "stylegan", "unknown"]
    # ffhq: a real at 0.1 (right) and a real at 0.7 (called fake): accuracy 1/2; stylegan: 0.8 right, 0.4 wrong
    assert per.loc["ffhq", "accuracy"] == 0.5 and per.loc["stylegan", "accuracy"] == 0.5
    assert per.loc["sd", "n"] == 1 and per.loc["sd", "accuracy"] == 1.0
    assert "accuracy 95% CI" in per.columns and not any(c.endswith("_ci") for c in per.columns)
    assert summaries.per_source_frame(PREDS.drop(columns="source"), 0.5) is None
    assert summaries.per_source_frame(PREDS.assign(source=["", " ", None, "", "", ""]), 0.5) is None


def test_report_frame_has_a_row_per_class_and_average():
    rep = evaluation.classification_report_dict(PREDS["label"], PREDS["p_fake"], 0.5)
    table = summaries.report_frame(rep)
    assert list(table.columns) == ["class", "precision", "recall", "f1-score", "support"]
    acc = table[table["class"] == "accuracy"].iloc[0]
    assert acc["f1-score"] == pytest.approx(4 / 6) and pd.isna(acc["precision"]) and pd.isna(acc["support"])
    assert table["class"].tolist()[:2] == [k for k in rep if isinstance(rep[k], dict)][:2]


def test_interval_rows_are_the_forest_plot_rows_of_comparison():
    met = evaluation.binary_metrics(PREDS["label"], PREDS["p_fake"], 0.5)
    rows = pd.DataFrame(summaries.interval_rows("m", met), columns=summaries.INTERVAL_COLUMNS)
    pd.testing.assert_frame_equal(rows, comparison.intervals_frame({"m": PREDS}, {"m": 0.5}))
    assert rows["metric"].tolist() == ["accuracy", "auc"] and rows["n"].tolist() == [6, 6]


def test_operating_point_from_counts():
    at = summaries.operating_point({"tn": 2, "fp": 1, "fn": 1, "tp": 2})
    assert at == {"fpr": pytest.approx(1 / 3), "tpr": pytest.approx(2 / 3), "precision": pytest.approx(2 / 3)}
    none_called_fake = summaries.operating_point({"tn": 3, "fp": 0, "fn": 3, "tp": 0})
    assert none_called_fake == {"fpr": 0.0, "tpr": 0.0, "precision": 1.0}


def test_score_histogram_counts_every_finite_score_once():
    rng = np.random.default_rng(0)
    d = frame(["real"] * 50 + ["fake"] * 30, np.r_[rng.uniform(0, 0.6, 50), rng.uniform(0.4, 1, 30)])
    d.loc[3, "p_fake"] = np.nan
    h = summaries.score_histogram(d)
    assert len(h["centres"]) == len(h["real"]) == len(h["fake"]) == summaries.HISTOGRAM_BINS
    assert sum(h["real"]) == 49 and sum(h["fake"]) == 30
    lo, hi = np.nanmin(d["p_fake"]), np.nanmax(d["p_fake"])
    assert h["centres"][0] - h["width"] / 2 == pytest.approx(lo) and h["width"] == pytest.approx((hi - lo) / 40)
    one_score = summaries.score_histogram(frame(["fake", "fake"], [0.5, 0.5]))
    assert one_score["width"] == 1e-4 and sum(one_score["fake"]) == 2


def test_bench_ms_reads_the_card_or_says_none():
    assert summaries.bench_ms({"bench": {"latency_ms_p50": "12.5", "ms_per_image": 3}}) == 12.5
    assert summaries.bench_ms({"bench": {"ms_per_image": 3}}) == 3.0
    assert [summaries.bench_ms(c) for c in ({}, {"bench": None}, {"bench": [1]}, {"bench": {"ms_per_image": "x"}})] \
        == [None] * 4


def test_compare_metrics_table_rows_export():
    cards = {"a": {"params": 10, "file_mb": 1.5, "architecture": "cnn", "input_size": 64}, "b": {}}
    rows = []
    for m, thr in (("a", 0.5), ("b", 0.75)):
        met = evaluation.binary_metrics(PREDS["label"], PREDS["p_fake"], thr)
        rows.append(summaries.metrics_row(m, met, 0.1, None, thr, None, cards[m]))
    metrics = summaries.metrics_frame(rows)
    assert "unfamiliar" not in metrics  # no model has a novelty reference
    a = metrics.iloc[0]
    assert (a["model"], a["n"], a["threshold"], a["params"], a["input_size"]) == ("a", 6, 0.5, 10, 64)
    assert a["accuracy"] == pytest.approx(4 / 6) and (a["tn"], a["fp"], a["fn"], a["tp"]) == (2, 1, 1, 2)
    assert a["accuracy 95% CI"] == summaries.interval(evaluation.binary_metrics(
        PREDS["label"], PREDS["p_fake"], 0.5)["accuracy_ci"])
    assert metrics.iloc[1]["tp"] == 2 and metrics.iloc[1]["fp"] == 0  # 0.75: the 0.7 real is no longer fake
    rows[1]["unfamiliar"] = 0.25
    assert summaries.metrics_frame(rows)["unfamiliar"].tolist()[1] == 0.25

    per = summaries.per_source_table({"a": summaries.per_source_frame(PREDS, 0.5), "b": None})
    assert per.columns[0] == "model" and set(per["model"]) == {"a"} and len(per) == 4
    assert summaries.per_source_table({"a": None}) is None
    export = summaries.metrics_export(metrics, per, "test")
    assert export["source"].tolist()[:2] == ["ALL", "ALL"] and len(export) == 2 + 4
    assert set(export["split"]) == {"test"}
    assert len(summaries.metrics_export(metrics, None, "your set")) == 2


def test_frame_key_follows_the_rows():
    key = summaries.frame_key("m", PREDS)
    assert key == summaries.frame_key("m", PREDS.copy()) and key.startswith("m:6:")
    assert key != summaries.frame_key("m", PREDS.assign(p_fake=PREDS["p_fake"] + 0.01))
    assert key != summaries.frame_key("n", PREDS)


def test_run_summary_row_of_a_card_and_of_a_run_still_training():
    card = {"name": "x", "architecture": "cnn", "params": 5, "threshold": 0.4, "kfold": None,
            "data": {"counts": {"train": {"real": 3, "fake": 4}, "val": {}}},
            "training": {"epochs_run": 7, "phases": ["head", "fine_tune"], "total_seconds": 12.0, "kept_epoch": 5},
            "metrics": {"test": {"accuracy": 0.9, "auc": 0.95}}}
    row = summaries.run_summary_row("runs/x", card)
    assert row["run"] == "runs/x" and row["model"] == "x" and row["phases"] == "head+fine_tune"
    assert (row["train real/fake"], row["val real/fake"], row["test real/fake"]) == ("3/4", "", "")
    assert (row["epochs_run"], row["test_auc"], row["threshold"], row["kept_epoch"]) == (7, 0.95, 0.4, 5)
    assert row["averaged_epochs"] is None
    assert summaries.run_summary_row("busy", None, 3) == {"run": "busy", "model": "(training...)", "epochs_run": 3}


def test_folds_table_and_line():
    folds = pd.DataFrame({"fold": [0, 1, 2], "accuracy": [0.8, 0.9, 1.0], "auc": [0.9, 0.9, 0.9], "n": [5, 5, 5]})
    assert summaries.fold_metrics(folds) == ["accuracy", "auc"]
    table = summaries.folds_table(folds)
    assert table["fold"].tolist() == ["0", "1", "2", "mean", "std"]
    assert table["accuracy"].iloc[3] == pytest.approx(0.9) and table["accuracy"].iloc[4] == pytest.approx(0.1)
    assert math.isnan(table["n"].iloc[3])
    assert summaries.folds_line(folds) == "accuracy 0.900 ± 0.100 · auc 0.900 ± 0.000"


def test_history_phase_changes_and_learning_rate_drops():
    h = pd.DataFrame({"x": [1, 2, 3, 4, 5], "phase": ["head", "head", "fine", "fine", "fine"],
                      "learning_rate": [1e-3, 5e-4, 1e-4, 1e-4, 5e-5]})
    assert summaries.phase_changes(h) == [(2.5, "fine")]
    assert summaries.lr_drops(h)["x"].tolist() == [2, 5]  # the drop into the new phase is not a plateau drop
    assert summaries.phase_changes(h.drop(columns="phase")) == []
    assert summaries.lr_drops(h.drop(columns="phase"))["x"].tolist() == [2, 3, 5]
    assert summaries.lr_drops(h.drop(columns="learning_rate")).empty


def test_kept_point_of_a_card():
    averaged = {"training": {"kept_average": True, "averaged_epochs": "6-8", "averaged_value": 0.93}}
    assert summaries.kept_point(averaged)[:2] == (8, 0.93)
    by_source = {"training": {"kept_by": "val_source_auc", "kept_epoch": 4, "kept_value": 0.91}}
    assert summaries.kept_point(by_source)[:2] == (4, 0.91)
    assert summaries.kept_point({"training": {"kept_by": "val_auc", "kept_epoch": 4}}) is None
    assert summaries.kept_point(None) is None


def test_learning_curve_means_per_size():
    table = pd.DataFrame({"size": [10, 10, 20], "draw": [0, 1, 0], "auc_val": [0.6, 0.8, 0.9]})
    means = summaries.learning_curve_means(table)
    assert means.columns.tolist() == ["size", "auc_val"]
    assert means["auc_val"].tolist() == pytest.approx([0.7, 0.9])
