"""The probes' learning curve (detector.learning_curve): subsets, the refits, the power law,
and the CLI on a tiny split root."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import open_page
from detector import learning_curve
from detector.__main__ import main


def test_power_law_recovers_a_known_curve_and_says_how_many_images():
    sizes = [100, 200, 400, 800]
    table = pd.DataFrame({"size": np.repeat(sizes, 2), "draw": [0, 1] * 4,
                          "auc_val": np.repeat([1 - 2 * n ** -0.5 for n in sizes], 2)})
    law = learning_curve.power_law(table)
    assert law == pytest.approx({"a": 2.0, "b": -0.5})
    assert learning_curve.images_for(0.99, law) == pytest.approx(40_000)  # (0.01 / 2) ** -2
    assert learning_curve.images_for(0.99, {"a": 0.1, "b": 0.1}) == float("inf")  # not climbing
    with pytest.raises(ValueError, match="two subset sizes"):
        learning_curve.power_law(table[table["size"] == 100])


def test_default_sizes_run_from_an_eighth_to_all():
    assert learning_curve.default_sizes(1200) == [150, 300, 600, 900, 1200]
    assert learning_curve.default_sizes(16) == [4, 8, 12, 16]


def test_balanced_subset_takes_half_of_each_class():
    labels = np.r_[np.zeros(30, int), np.ones(10, int)]
    idx = learning_curve.balanced_subset(labels, 12, np.random.default_rng(0))
    assert len(set(idx)) == 12 and list(idx) == sorted(idx)
    assert (labels[idx] == 1).sum() == 6
    assert (labels[learning_curve.balanced_subset(labels, 30, np.random.default_rng(0))] == 1).sum() == 10


def _maps(n: int, rng: np.random.Generator, d: int = 400) -> tuple[list[np.ndarray], np.ndarray]:
    """Two "probe maps" of n images: a weak signal spread over 40 of d features, as in a
    frozen trunk map where few images cannot find which positions matter."""
    y = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    signal = np.zeros(d)
    signal[:40] = 0.25
    return [rng.normal(size=(n, d)) + np.outer(y, signal) for _ in range(2)], y


def test_curve_refits_on_growing_subsets_and_more_images_score_higher():
    rng = np.random.default_rng(1)
    (train, y_train), (val, y_val), (test, y_test) = _maps(400, rng), _maps(300, rng), _maps(300, rng)
    maps = {"train": train, "val": val, "test": test}
    labels = {"train": y_train, "val": y_val, "test": y_test}
    seen = []
    table = learning_curve.curve(maps, labels, [20, 100, 400], draws=2, progress=lambda *a: seen.append(a))
    assert list(table["size"]) == [20, 20, 100, 100, 400]  # one draw of the full set
    assert [s[:2] for s in seen] == [(i, 5) for i in range(1, 6)] and seen[0][2].startswith("size 20, draw 0, auc_val ")
    assert learning_curve.n_fits(400, [20, 100, 400], 2) == 5
    means = table.groupby("size")[["auc_val", "auc_test"]].mean()
    assert means.loc[400, "auc_val"] > means.loc[100, "auc_val"] > means.loc[20, "auc_val"]
    assert means.loc[400, "auc_test"] > means.loc[20, "auc_test"] + 0.1
    assert learning_curve.power_law(table)["b"] < 0
    with pytest.raises(ValueError, match="val"):
        learning_curve.curve({"train": train, "test": test}, labels, [20])
    with pytest.raises(ValueError, match="outside"):
        learning_curve.curve(maps, labels, [800])


@pytest.mark.slow
def test_learning_curve_command_on_a_tiny_split_root(tiny_dataset, capfd):
    """Frozen ImageNet Lite0 at 64 px, both probe views, on one source of the tiny data (16
    training images): one JSON object with a row per subset and draw, AUCs in [0, 1]."""
    assert main(["learning-curve", "--data", str(tiny_dataset), "--source", "alpha", "--img-size", "64",
                 "--sizes", "8", "16", "--draws", "2", "--json"]) == 0
    result = json.loads(capfd.readouterr().out)
    assert result["source"] == "alpha" and result["n_train"] == 16
    rows = pd.DataFrame(result["table"])
    assert list(rows["size"]) == [8, 8, 16]
    assert rows[["auc_val", "auc_test"]].stack().between(0, 1).all()
    if result["law"] is None:  # these synthetic faces are easy: val AUC 1.0, nothing to extrapolate
        assert result["images_for"] == {} and (rows.groupby("size")["auc_val"].mean() < 1).sum() < 2
    else:
        assert set(result["law"]) == {"a", "b"} and set(result["images_for"]) == {"0.98", "0.99", "0.995"}
    assert main(["learning-curve", "--data", str(tiny_dataset), "--source", "alpha", "--img-size", "64",
                 "--sizes", "8", "16", "--draws", "1"]) == 0
    text = capfd.readouterr().out
    assert "mean AUC per subset size" in text and ("Power law through val" in text or "reaches 1.0" in text)
    assert main(["learning-curve", "--data", str(tiny_dataset), "--source", "nowhere"]) == 1
    assert "no train and val images of source 'nowhere'" in capfd.readouterr().err
    assert main(["learning-curve", "--data", str(tiny_dataset), "--source", "alpha", "--model", "custom_cnn"]) == 1
    assert "names no probe layers" in capfd.readouterr().err


@pytest.mark.slow
def test_training_page_draws_a_learning_curve(tiny_dataset, monkeypatch):
    """AppTest: the "Would more data help?" tab lists the folder's sources, runs the curve with a
    progress bar and draws it (every draw and the means of val and test), with its table."""
    monkeypatch.setenv("DEEPFAKE_LAB_ROOTS", str(tiny_dataset))  # server folders are off without data roots
    at = open_page("app/pages/training.py", monkeypatch, timeout=240)
    at.text_input(key="lc_folder").set_value(str(tiny_dataset)).run()
    assert at.selectbox(key="lc_source").options == ["alpha", "beta"]
    at.selectbox(key="lc_source").set_value("beta").run()
    at.button(key="lc_run").click().run()
    assert not at.exception, at.exception
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "Learning curve: beta" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    names = [t["name"] for t in spec["data"]]
    assert {"val, each draw", "val, mean", "test, each draw", "test, mean"} <= set(names)
    means = next(d.value for d in at.dataframe if "auc_val" in d.value.columns)
    assert list(means["size"]) == learning_curve.default_sizes(16)
    assert means[["auc_val", "auc_test"]].stack().between(0, 1).all()
    # a folder without sources says so and offers nothing to run
    at.text_input(key="lc_folder").set_value(str(tiny_dataset / "train" / "real")).run()
    assert at.button(key="lc_run").disabled and any("No sources here" in i.value for i in at.info)
