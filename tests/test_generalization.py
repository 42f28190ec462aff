"""The cross-source matrix (detector.generalization, `python -m detector generalization`): cells
checked by hand, leave-one-source-out rows on a tiny split root, a shipped-model row recorded
into its card and read back as the Detect page's coverage line."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import jpeg_bytes, smooth_image
from detector import generalization, report, store
from detector.__main__ import main


def checker_energy(paths: list[str]) -> np.ndarray:
    """A stand-in frozen feature: mean absolute difference of neighbouring pixels (the tiny
    fakes carry a checker pattern) and the mean brightness."""
    from detector import images

    out = []
    for p in paths:
        x = images.decode_image(p).astype(float)
        out.append([np.abs(np.diff(x, axis=1)).mean(), x.mean()])
    return np.array(out)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """A 'generator' no split holds: reals as in training, fakes much brighter, no checker."""
    root = tmp_path_factory.mktemp("heldout") / "brightgen"
    rng = np.random.default_rng(7)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            img = smooth_image(rng) if label == "real" else np.clip(smooth_image(rng).astype(int) + 60, 0, 255).astype(np.uint8)
            (root / label / f"{label}_{i}.jpg").write_bytes(jpeg_bytes(img))
    return root


def test_cell_counts_fakes_caught_and_reals_called_fake():
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.2, 0.1, 0.7, 0.1, 0.1, 0.1, 0.1]
    cell = generalization.cell_metrics(y, p, 0.5)
    assert (cell["n"], cell["n_real"], cell["n_fake"]) == (9, 5, 4)
    assert cell["recall"] == pytest.approx(2 / 4)
    assert cell["real_called_fake"] == pytest.approx(1 / 5)
    assert cell["accuracy"] == pytest.approx(6 / 9)
    lo, hi = cell["real_called_fake_ci"]
    assert lo < 0.2 < hi
    # AUC by its definition: fake-real pairs ranked right (ties count half)
    fakes, reals = [0.9, 0.8, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1, 0.1]
    pairs = [(f > r) + 0.5 * (f == r) for f in fakes for r in reals]
    assert cell["auc"] == pytest.approx(np.mean(pairs))
    # at most 10% of the 5 reals flagged means none: the best threshold sits above 0.7 -> 2 of 4
    assert cell["caught_at_10pct_fpr"] == pytest.approx(2 / 4)


def test_cell_says_what_the_detect_page_shows_for_missed_fakes():
    """A missed fake is either refused (novelty above the limit: CANNOT JUDGE) or passed as real
    with no warning; only the second misleads, and the cell counts each by hand."""
    y = [1, 1, 1, 1, 1, 0, 0, 0, 0]
    p = [0.9, 0.2, 0.1, 0.8, 0.3, 0.1, 0.9, 0.1, 0.1]
    nov = [0.5, 1.5, 0.5, 2.0, 0.9, 3.0, 0.5, 0.5, 1.01]
    cell = generalization.verdict_shares(y, p, 0.5, nov)
    assert cell["cannot_judge_fake"] == pytest.approx(2 / 5)  # novelty 1.5 and 2.0
    assert cell["fake_passed_as_real"] == pytest.approx(2 / 5)  # 0.1 and 0.3, both familiar
    assert cell["cannot_judge_real"] == pytest.approx(2 / 4)  # 3.0 and 1.01
    lo, hi = cell["fake_passed_as_real_ci"]
    assert lo < 0.4 < hi
    # a model without a novelty reference refuses nothing: every missed fake is shown REAL
    bare = generalization.verdict_shares(y, p, 0.5)
    assert bare["cannot_judge_fake"] == bare["cannot_judge_real"] == 0
    assert bare["fake_passed_as_real"] == pytest.approx(3 / 5)  # every fake under 0.5


def test_caught_at_few_reals_flagged_can_rank_detectors_unlike_the_auc():
    """Two detectors: A has the higher AUC, B catches more fakes with at most 10% reals flagged
    (what an analyst can use): the readout says so, the AUC alone would not."""
    from detector import evaluation

    y = np.array([0] * 10 + [1] * 10)
    a = np.array([95, 90, 0, 0, 0, 0, 0, 0, 0, 0] + [80] * 10) / 100  # two reals scored above every fake
    b = np.array([20] * 10 + [90] * 5 + [10] * 5) / 100  # half the fakes clear, half missed
    assert evaluation.binary_metrics(y, a)["auc"] == pytest.approx(0.8)
    assert evaluation.binary_metrics(y, b)["auc"] == pytest.approx(0.5)
    assert evaluation.recall_at_fpr(y, a, 0.10) == pytest.approx(0.0)  # catching any fake flags 2 reals of 10
    assert evaluation.recall_at_fpr(y, b, 0.10) == pytest.approx(0.5)
    assert evaluation.recall_at_fpr(y, a, 0.20) == pytest.approx(1.0)  # a looser rate changes the ranking
    assert np.isnan(evaluation.recall_at_fpr([1, 1], [0.2, 0.9]))


def test_recipe_matrix_leaves_each_source_out_and_scores_heldout(tiny_dataset, heldout):
    sets = generalization.load_sets(tiny_dataset, [str(heldout)])
    assert sets.sources == ["alpha", "beta"] and sets.columns == ["alpha", "beta", "brightgen"]
    rows = generalization.recipe_matrix(sets, checker_energy, cap=None)
    assert [r["left_out"] for r in rows] == [[], ["alpha"], ["beta"]]
    assert [r["trained_on"] for r in rows] == [["alpha", "beta"], ["beta"], ["alpha"]]
    for r in rows:
        assert set(r["cells"]) == {"alpha", "beta", "brightgen"}
        # the checker feature separates the tiny sources' fakes, seen or left out
        assert r["cells"]["alpha"]["auc"] > 0.9 and r["cells"]["beta"]["auc"] > 0.9
    # the held-out fakes have no checker: the probe catches few of them
    assert rows[0]["cells"]["brightgen"]["recall"] < 0.5
    # a probe is not what the Detect page serves: no claim about what that page would show
    assert not any(k in r["cells"]["brightgen"] for r in rows for k in generalization.VERDICT_KEYS)
    frame = generalization.long_frame({"rows": rows, "heldout": ["brightgen"]})
    assert len(frame) == 9
    assert set(frame["kind"]) == {"seen in training", "left out", "held-out generator"}
    assert (frame[frame["trained_on"] == "without alpha"].set_index("tested_on").loc["alpha", "kind"]) == "left out"


def test_training_subset_caps_each_source_and_class(tiny_dataset):
    split = generalization.load_sets(tiny_dataset).split
    sub = generalization.training_subset(split, ["alpha"], cap=3)
    assert len(sub) == 6 and set(sub["source"]) == {"alpha"} and set(sub["split"]) == {"train"}
    assert sub.groupby("label").size().tolist() == [3, 3]


def test_command_prints_the_matrix_as_json(tiny_dataset, heldout, monkeypatch, capsys):
    monkeypatch.setitem(generalization.RECIPES, "toy", lambda: checker_energy)
    assert main(["generalization", str(tiny_dataset), "--heldout", str(heldout), "--recipe", "toy", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["recipe"] == "toy" and result["heldout"] == ["brightgen"]
    assert len(result["rows"]) == 3
    assert result["rows"][1]["cells"]["alpha"]["auc_ci"][0] <= result["rows"][1]["cells"]["alpha"]["auc"]
    assert main(["generalization", str(tiny_dataset), "--recipe", "nope"]) == 1
    assert main(["generalization", str(tiny_dataset / "train")]) == 1  # not a split root
    assert "unknown recipe" in capsys.readouterr().err


def test_model_row_is_recorded_in_its_card_and_read_as_the_coverage_line(tiny_run, tiny_dataset, heldout,
                                                                        tmp_path, capsys):
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_run, folder, ignore=shutil.ignore_patterns("logs", "checkpoints"))
    assert "not measured on generators it never saw" in report.coverage_text(store.read_card(folder))
    assert main(["generalization", str(tiny_dataset), "--heldout", str(heldout), "--model", str(folder),
                 "--record"]) == 0
    out = capsys.readouterr().out
    assert "brightgen" in out and "held-out" in out and "worst held-out AUC" in out
    card = store.read_card(folder)
    cov = card["coverage"]
    assert set(cov["heldout"]) == {"brightgen"} and set(cov["shared_test"]) == {"alpha", "beta"}
    auc = cov["heldout"]["brightgen"]["auc"]
    assert cov["worst_heldout_auc"] == auc
    assert cov["worst_heldout_caught_at_10pct_fpr"] == cov["heldout"]["brightgen"]["caught_at_10pct_fpr"]
    assert "caught at 10% reals flagged" in out
    line = report.coverage_text(card)
    assert f"AUC {auc:.2f}" in line and "never saw" in line and "may pass as real" in line
    # no novelty reference in this run: nothing is refused, so every missed fake passes unwarned
    cell = cov["heldout"]["brightgen"]
    assert cell["cannot_judge_fake"] == 0 and cell["fake_passed_as_real"] == pytest.approx(1 - cell["recall"])
    assert f"{cell['fake_passed_as_real']:.0%} passed as real with no warning" in line


def test_model_with_a_novelty_reference_records_the_fakes_it_passes_unwarned(tiny_run_novel, tiny_dataset,
                                                                           heldout, tmp_path, capsys):
    """The Detect page refuses faces unlike the training faces; the matrix counts a missed fake
    as passed with no warning only when the page would show it REAL, and the coverage line says so."""
    from detector import images, inference, novelty

    folder = tmp_path / "tiny_novel"
    shutil.copytree(tiny_run_novel, folder)
    fakes = sorted((heldout / "fake").iterdir())
    # a fresh Detector, not load_detector's copy: that one is kept for the process, with the old threshold
    scores = inference.Detector(folder).score_crops([images.decode_image(f) for f in fakes])
    # a threshold inside the fakes' scores, so some are missed: refused or passed unwarned
    store.update_card(folder, threshold=float(np.median(scores.p_fake)))
    assert main(["generalization", str(tiny_dataset), "--heldout", str(heldout), "--model", str(folder),
                 "--record"]) == 0
    assert "passed as real with no warning" in capsys.readouterr().out
    cov = store.read_card(folder)["coverage"]
    cell = cov["heldout"]["brightgen"]
    # the same count by the page's own rules, image by image
    threshold = store.read_card(folder)["threshold"]
    shown_real = (~novelty.unfamiliar(scores.novelty)) & (scores.p_fake < threshold)
    assert 0 < shown_real.mean() < 0.5
    assert cell["fake_passed_as_real"] == pytest.approx(shown_real.mean())
    assert cell["cannot_judge_fake"] == pytest.approx(novelty.unfamiliar(scores.novelty).mean())
    assert cov["worst_heldout_passed_as_real"] == cell["fake_passed_as_real"]
    assert f"{cell['fake_passed_as_real']:.0%} passed as real with no warning" in report.coverage_text(
        store.read_card(folder))


def test_training_page_draws_the_matrix_of_recorded_models(tiny_run, tmp_path, monkeypatch):
    """Rows = models with held-out numbers in their cards; a model without them is not drawn."""
    from conftest import open_page

    root = tmp_path / "models"
    for name in ("tiny", "other"):
        shutil.copytree(tiny_run, root / name, ignore=shutil.ignore_patterns("logs", "checkpoints"))
        card = json.loads((root / name / "card.json").read_text())
        card["name"] = name
        (root / name / "card.json").write_text(json.dumps(card))
    (root / "DEFAULT").write_text("tiny\n")
    cell = {"n": 40, "auc": 0.61, "accuracy": 0.55, "recall": 0.3, "real_called_fake": 0.2}
    store.update_card(root / "tiny", coverage={"trained_on": ["face swaps"], "heldout": {"gen_x": cell},
                                               "shared_test": {"alpha": {**cell, "auc": 0.97}}})
    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(root))
    at = open_page("app/pages/training.py", monkeypatch)
    assert any("never saw" in c.value for c in at.caption)
    frames = [d.value for d in at.dataframe if "tested_on" in d.value.columns]
    assert len(frames) == 1
    table = frames[0]
    assert set(table["trained_on"]) == {"tiny (shipped)"}
    assert table.set_index("tested_on").loc["gen_x", "kind"] == "held-out generator"
    assert float(table.set_index("tested_on").loc["alpha", "auc"]) == pytest.approx(0.97)


def test_coverage_line_states_worst_numbers_and_chance():
    cell = {"auc": 0.55, "recall": 0.25, "real_called_fake": 0.40}
    card = {"coverage": {"trained_on": ["face swaps"], "heldout": {"gen_a": cell, "gen_b": {**cell, "auc": 0.9,
                                                                                           "real_called_fake": 0.05}}}}
    line = report.coverage_text(card)
    assert line.startswith("Trained on face swaps; on generators it never saw: AUC 0.55-0.90")
    assert "near or below chance" in line and "up to 40% of their real photos called fake" in line
    assert "no warning" not in line  # not measured: not claimed
    card["coverage"]["heldout"]["gen_b"]["fake_passed_as_real"] = 0.17
    assert "25% of their fakes caught, 17% passed as real with no warning" in report.coverage_text(card)
    card["coverage"]["heldout"]["gen_a"]["auc"] = 0.8
    assert "chance" not in report.coverage_text(card)


def test_select_default_takes_the_best_worst_heldout_auc():
    cards = [{"name": "in_dist_star", "coverage": {"worst_heldout_auc": 0.48}},
             {"name": "steady", "coverage": {"worst_heldout_auc": 0.67}},
             {"name": "unmeasured"}]
    assert generalization.select_default(cards) == "steady"
    assert generalization.select_default([{"name": "unmeasured"}]) is None


def test_select_default_prefers_fakes_caught_at_few_reals_flagged_over_auc():
    """Where every candidate has it, the worst share caught at 10% reals flagged decides; the AUC
    breaks ties (and decides alone while a candidate lacks the readout)."""
    def card(name, auc, caught):
        return {"name": name, "coverage": {"worst_heldout_auc": auc, "worst_heldout_caught_at_10pct_fpr": caught}}

    shipped, sbi = card("shipped", 0.670, 0.51), card("sbi", 0.745, 0.48)
    assert generalization.select_default([sbi, shipped]) == "shipped"
    assert generalization.select_default([sbi, card("tie", 0.70, 0.48)]) == "sbi"
    assert generalization.select_default([sbi, {"name": "old", "coverage": {"worst_heldout_auc": 0.67}}]) == "sbi"


def test_shipped_default_is_chosen_by_its_worst_heldout_number():
    """Every shipped model carries held-out numbers, and DEFAULT names the best worst case."""
    cards = store.list_cards()
    if not cards:
        pytest.skip("no shipped models")
    assert all(generalization.worst_heldout_auc(c) is not None for c in cards), [c["name"] for c in cards]
    assert all(generalization.worst_heldout_caught(c) is not None for c in cards), [c["name"] for c in cards]
    assert generalization.select_default(cards) == store.default_model_name()


def test_a_saved_matrix_loads_and_draws_and_garbage_is_refused(tiny_dataset, heldout, monkeypatch, capsys):
    monkeypatch.setitem(generalization.RECIPES, "toy", lambda: checker_energy)
    assert main(["generalization", str(tiny_dataset), "--heldout", str(heldout), "--recipe", "toy", "--json"]) == 0
    loaded = generalization.load_result(capsys.readouterr().out)
    from app import matrix_view

    fig = matrix_view.heatmap(generalization.long_frame(loaded), "AUC", "toy")
    z = fig.data[0].z
    assert len(z) == 3 and len(z[0]) == 3  # rows: all, without alpha, without beta
    assert list(fig.data[0].y) == ["all sources", "without alpha", "without beta"]
    assert "held-out" in fig.data[0].x[2]
    for bad in (b"not json", b"[]", b'{"rows": []}', b'{"rows": [{"no": "cells"}]}'):
        with pytest.raises(ValueError):
            generalization.load_result(bad)


def test_heatmap_draws_fakes_caught_at_few_reals_flagged():
    """The Training page's metric switch includes the number the default is chosen by; a cell the
    card lacks (recorded before it existed) is drawn empty, not as zero."""
    from app import matrix_view

    cells = {"alpha": {"auc": 0.97, "caught_at_10pct_fpr": 0.9},
             "gen_x": {"auc": 0.6, "caught_at_10pct_fpr": 0.25}, "gen_y": {"auc": 0.7}}
    result = {"rows": [{"model": "m", "trained_on": ["alpha"], "left_out": [], "cells": cells}],
              "heldout": ["gen_x", "gen_y"]}
    frame = generalization.long_frame(result)
    fig = matrix_view.heatmap(frame, "caught at 10% reals flagged", "t")
    z = fig.data[0].z[0]
    assert list(z[:2]) == [0.9, 0.25] and np.isnan(z[2])
    assert fig.data[0].colorscale[0][1] == matrix_view.heatmap(frame, "AUC", "t").data[0].colorscale[0][1]


def test_heatmap_draws_fakes_passed_as_real_coloured_as_a_harm():
    """Fakes the Detect page shows as REAL with no warning: more is worse, so the colours run the
    other way round from AUC (like reals called fake)."""
    from app import matrix_view

    cells = {"alpha": {"auc": 0.97, "fake_passed_as_real": 0.05}, "gen_x": {"auc": 0.6, "fake_passed_as_real": 0.45}}
    result = {"rows": [{"model": "m", "trained_on": ["alpha"], "left_out": [], "cells": cells}], "heldout": ["gen_x"]}
    frame = generalization.long_frame(result)
    fig = matrix_view.heatmap(frame, "fakes passed as real, no warning", "t")
    assert list(fig.data[0].z[0]) == [0.05, 0.45]

    def scale(metric):
        return [c[1] for c in matrix_view.heatmap(frame, metric, "t").data[0].colorscale]
    assert scale("fakes passed as real, no warning") == scale("reals called fake") != scale("AUC")


def test_models_markdown_has_a_heldout_column_per_generator_from_the_cards():
    """The README's model table: each held-out generator recorded in a card is a column of AUC /
    caught / reals called fake / fakes shown REAL with no warning; a card without it reads n/a."""
    from detector.__main__ import models_markdown

    base = {"input_size": 32, "params": 1000, "file_mb": 0.1, "threshold": 0.5, "metrics": {"test": {}}}
    cell = {"auc": 0.671, "recall": 0.49, "real_called_fake": 0.086, "fake_passed_as_real": 0.172}
    cards = [{**base, "name": "a", "default": True, "coverage": {"heldout": {"gen_x": cell}}},
             {**base, "name": "b", "default": False}]
    table = models_markdown(cards).splitlines()
    assert "held-out gen_x: AUC / caught / reals called fake / fakes shown REAL, no warning" in table[0]
    assert "| 0.67 / 49% / 9% / 17% |" in table[2]
    assert "| n/a / n/a / n/a / n/a |" in table[3]
