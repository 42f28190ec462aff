"""The compare page's library (detector/comparison.py) and the page itself (AppTest).

Labelled sets are zips built here in memory from generated pictures (tests/conftest.py);
the models are the shared tiny run (`tiny_run`) copied into a temporary models folder, once
plain and once with bench numbers on its card and a robustness.csv beside it.
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, fake_image, jpeg_bytes, smooth_image
from detector import comparison, images

APP = str(REPO_ROOT / "streamlit_app.py")


def labelled_zip(per_class: int = 3, corrupt: bool = True, prefix: str = "set/", seed: int = 0) -> bytes:
    """A zip: {prefix}Real/ and {prefix}fake/ (mixed case on purpose) of generated pictures,
    fakes split over two source sub-folders, plus noise the reader must ignore or report."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(prefix + "Real/", b"")  # a directory entry
        for i in range(per_class):
            z.writestr(f"{prefix}Real/r{i}.jpg", jpeg_bytes(smooth_image(rng, 40 + i)))
            z.writestr(f"{prefix}fake/{'gan' if i % 2 else 'swap'}/f{i}.png", images.encode_png(fake_image(rng, 40)))
        if corrupt:
            z.writestr(prefix + "fake/broken.jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg")
        z.writestr("README.txt", b"not labelled")
        z.writestr("__MACOSX/set/Real/._r0.jpg", b"resource fork")
        z.writestr(prefix + "real/.hidden.jpg", b"x")
    return buf.getvalue()


# --- reading ---------------------------------------------------------------------------------

def test_label_of_matches_folders_case_insensitively_at_any_depth():
    assert comparison.label_of("real/a.jpg") == ("real", "")
    assert comparison.label_of("x/y/REAL/a.jpg") == ("real", "")
    assert comparison.label_of("x/Fake/stylegan/deep/a.jpg") == ("fake", "stylegan")
    assert comparison.label_of("real/fake/a.jpg") == ("fake", "")  # the deepest label folder wins
    assert comparison.label_of("x\\fake\\a.jpg") == ("fake", "")
    for unlabelled in ("a.jpg", "real.jpg", "realistic/a.jpg", "__MACOSX/real/a.jpg", "real/.a.jpg"):
        assert comparison.label_of(unlabelled) is None, unlabelled


def test_read_labelled_zip_gives_labels_and_one_error():
    items = comparison.read_labelled_zip(labelled_zip(per_class=3))
    assert len(items) == 7 and len(items.good) == 6
    (bad,) = items.bad
    assert bad.name == "set/fake/broken.jpg" and bad.label == "fake"
    assert isinstance(bad.image, str) and "corrupt" in bad.image
    labels = {i.name: i.label for i in items.good}
    assert labels == {"set/Real/r0.jpg": "real", "set/Real/r1.jpg": "real", "set/Real/r2.jpg": "real",
                      "set/fake/swap/f0.png": "fake", "set/fake/gan/f1.png": "fake", "set/fake/swap/f2.png": "fake"}
    assert {i.source for i in items.good if i.label == "fake"} == {"gan", "swap"}
    for item in items.good:
        assert item.image.dtype == np.uint8 and item.image.ndim == 3 and item.image.shape[2] == 3
    r1 = next(i for i in items.good if i.name == "set/Real/r1.jpg")
    assert r1.image.shape == (41, 41, 3)  # decoded at its own size, not resized
    assert set(items.ignored) == {"README.txt", "__MACOSX/set/Real/._r0.jpg", "set/real/.hidden.jpg"}


def test_read_labelled_zip_refuses_what_it_cannot_use():
    with pytest.raises(ValueError, match="not a readable zip"):
        comparison.read_labelled_zip(b"PK but not really a zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pictures/a.jpg", jpeg_bytes(smooth_image(np.random.default_rng(0))))
    with pytest.raises(ValueError, match="real/ or fake/"):
        comparison.read_labelled_zip(buf.getvalue())


def test_read_labelled_folder_matches_the_zip(tmp_path):
    blob = labelled_zip(per_class=2)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        z.extractall(tmp_path)
    from_zip = comparison.read_labelled_zip(blob)
    from_folder = comparison.read_labelled_folder(tmp_path)
    key = lambda items: sorted((i.name, i.label, i.source, i.ok) for i in items)  # noqa: E731
    assert key(from_folder) == key(from_zip)
    pixels = {i.name: i.image for i in from_zip.good}
    for item in from_folder.good:
        np.testing.assert_array_equal(item.image, pixels[item.name])
    signature = comparison.folder_signature(tmp_path)
    assert signature == comparison.folder_signature(tmp_path)
    (tmp_path / "set" / "Real" / "new.jpg").write_bytes(jpeg_bytes(smooth_image(np.random.default_rng(5))))
    assert comparison.folder_signature(tmp_path) != signature
    with pytest.raises(ValueError, match="not a folder"):
        comparison.read_labelled_folder(tmp_path / "missing")


# --- scoring ---------------------------------------------------------------------------------

def test_score_labelled_matches_score_batch(tiny_run):
    from detector import inference

    items = comparison.read_labelled_zip(labelled_zip(per_class=3))
    calls = []
    frame = comparison.score_labelled(items, [str(tiny_run)], progress=lambda f, text: calls.append(f),
                                      batch_size=4)
    assert list(frame.columns) == ["model", *comparison.COLUMNS]
    assert len(frame) == len(items.good) == 6
    assert set(frame["model"]) == {tiny_run.name} and set(frame["split"]) == {comparison.SPLIT}
    assert list(frame["path"]) == [i.name for i in items.good]
    assert list(frame["label"]) == [i.label for i in items.good]
    assert frame["p_fake"].between(0, 1).all()
    det = inference.load_detector(str(tiny_run))
    expected = np.concatenate([det.score_batch(images.resize_to(i.image, det.size)[None]) for i in items.good])
    np.testing.assert_allclose(frame["p_fake"].to_numpy(), expected, rtol=0, atol=1e-5)
    assert calls[0] == 0.0 and calls[-1] == 1.0 and calls == sorted(calls)
    ms = frame.attrs["ms_per_image"][tiny_run.name]
    assert ms > 0 and frame.attrs["seconds"] >= frame.attrs["model_seconds"][tiny_run.name]
    # no good images: an empty frame, no crash
    empty = comparison.score_labelled(items.bad, [str(tiny_run)])
    assert empty.empty and list(empty.columns) == ["model", *comparison.COLUMNS]


# --- sanity flags and robustness tables ------------------------------------------------------------

def _preds(scores, labels) -> pd.DataFrame:
    return pd.DataFrame({"split": "test", "path": [f"{i}.jpg" for i in range(len(scores))], "source": "",
                         "label": labels, "p_fake": scores})


def test_sanity_flags_on_synthetic_predictions():
    labels = ["real"] * 50 + ["fake"] * 50
    rng = np.random.default_rng(0)
    good = _preds(np.r_[rng.uniform(0, 0.4, 50), rng.uniform(0.6, 1, 50)], labels)
    assert comparison.sanity_flags(good) == []

    constant = comparison.sanity_flags(_preds(np.full(100, 0.73), labels))
    assert len(constant) == 2  # no spread, and so AUC 0.5
    assert "barely vary" in constant[0] and "0.0000" in constant[0]
    assert "AUC 0.500" in constant[1]

    nearly = comparison.sanity_flags(_preds(0.5 + rng.normal(0, 0.002, 100), labels))
    assert any("barely vary" in f for f in nearly)

    spread = np.linspace(0, 1, 50)  # both classes get the same spread of scores: AUC exactly 0.5
    chance = comparison.sanity_flags(_preds(np.r_[spread, spread], labels))
    assert len(chance) == 1 and "AUC 0.500 is within 0.05 of 0.5" in chance[0]
    near = _preds(np.r_[spread, spread + 0.03], labels)  # AUC a little above 0.5: still flagged
    assert any("AUC" in f for f in comparison.sanity_flags(near))
    assert comparison.sanity_flags(near, auc_margin=0.0) == []
    inverted = _preds(np.r_[np.full(50, 0.52), np.full(50, 0.48)] + rng.normal(0, 0.02, 100), labels)
    assert not any("AUC" in f for f in comparison.sanity_flags(inverted))  # AUC ~0 is far from 0.5

    one_class = comparison.sanity_flags(_preds(rng.uniform(0, 1, 20), ["fake"] * 20))
    assert one_class == []  # no AUC to judge, scores vary
    assert comparison.sanity_flags(_preds([], [])) == ["no scores"]
    assert comparison.sanity_flags(_preds(np.full(10, 0.2), [0, 1] * 5))[0].startswith("scores barely vary")


def test_robustness_frame_orders_levels():
    table = pd.DataFrame({
        "perturbation": ["jpeg_quality"] * 3 + ["downscale"] * 2 + ["gaussian_blur"] * 2,
        "level": ["30", "none", "95", "0.5", "1.0", "2", "0"],
        "n": 10, "accuracy": [0.6, 0.9, 0.85, 0.7, 0.9, 0.5, 0.9], "auc": ["0.7", "0.95", "0.9", "", "0.95", "0.5", "0.9"]})
    out = comparison.robustness_frame(table)
    by = {k: list(g["level"]) for k, g in out.groupby("perturbation", sort=False)}
    assert by == {"downscale": ["1", "0.5"], "gaussian_blur": ["0", "2"], "jpeg_quality": ["none", "95", "30"]}
    assert out["auc"].dtype.kind == "f" and out["auc"].isna().sum() == 1


# --- the page ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compare_models(tiny_run, tmp_path_factory) -> Path:
    """A models folder: `tiny` (the shared tiny run) and `tiny_bench` (the same network with
    bench numbers on its card and a robustness.csv)."""
    root = tmp_path_factory.mktemp("compare_models")
    skip = shutil.ignore_patterns("checkpoints", "logs", "folds", "robustness.csv")
    shutil.copytree(tiny_run, root / "tiny", ignore=skip)
    shutil.copytree(tiny_run, root / "tiny_bench", ignore=skip)
    card = json.loads((root / "tiny_bench" / "card.json").read_text())
    card["bench"] = {"latency_ms_p50": 1.25, "batch_ips": 900.0}
    (root / "tiny_bench" / "card.json").write_text(json.dumps(card))
    rows = [("jpeg_quality", lvl, 0.9 - 0.05 * i, 0.95 - 0.04 * i) for i, lvl in enumerate(("none", 95, 80, 60, 45, 30))]
    rows += [("downscale", lvl, 0.9 - 0.1 * i, 0.95 - 0.1 * i) for i, lvl in enumerate((1.0, 0.75, 0.5, 0.25))]
    rows += [("gaussian_blur", lvl, 0.9 - 0.1 * i, 0.95 - 0.1 * i) for i, lvl in enumerate((0, 0.5, 1, 2))]
    pd.DataFrame([{"perturbation": k, "level": lvl, "n": 32, "accuracy": a, "auc": u} for k, lvl, a, u in rows]
                 ).to_csv(root / "tiny_bench" / "robustness.csv", index=False, float_format="%.4f")
    (root / "DEFAULT").write_text("tiny\n")
    return root


@pytest.fixture()
def compare_page(compare_models, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(compare_models))  # pages/ui.py reads it per call
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Compare models"
    return at


def _metrics(at) -> pd.DataFrame:
    tables = [d.value for d in at.dataframe if {"model", "auc", "ece", "ms_per_image"} <= set(d.value.columns)]
    assert len(tables) == 1, [list(d.value.columns) for d in at.dataframe]
    return tables[0].set_index("model")


def _charts(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _title(spec: dict) -> str:
    return spec["layout"].get("title", {}).get("text", "")


def test_compare_page_saved_predictions_reliability_bench_and_robustness(compare_page):
    at = compare_page
    metrics = _metrics(at)
    assert set(metrics.index) == {"tiny", "tiny_bench"}
    assert metrics.loc["tiny_bench", "ms_per_image"] == pytest.approx(1.25)
    assert pd.isna(metrics.loc["tiny", "ms_per_image"])
    assert metrics["ece"].between(0, 1).all()
    charts = _charts(at)
    reliability = next(s for s in charts if _title(s).startswith("Reliability"))
    names = [t["name"] for t in reliability["data"]]
    assert any(n.startswith("tiny (ECE ") for n in names) and any(n.startswith("tiny_bench (ECE ") for n in names)
    # robustness: three charts with the tiny_bench lines; tiny is told which command makes its csv
    robust = [s for s in charts if _title(s) in ("JPEG quality", "Downscale factor", "Blur sigma (px)")]
    assert len(robust) == 3
    for spec in robust:
        assert {t["name"] for t in spec["data"]} == {"tiny_bench accuracy", "tiny_bench AUC"}
    jpeg = next(s for s in robust if _title(s) == "JPEG quality")
    assert jpeg["data"][0]["x"] == ["none", "95", "80", "60", "45", "30"]
    assert any("python -m detector robustness --model tiny`" in i.value for i in at.info)
    assert not any("tiny_bench`" in i.value for i in at.info)


def test_compare_page_scores_an_uploaded_labelled_zip(compare_page):
    at = compare_page
    at.button_group(key="cmp_source").set_value(comparison_label := "Your labelled set").run()
    assert not at.exception, at.exception
    assert at.button_group(key="cmp_source").value == comparison_label
    assert any("face crops" in c.value for c in at.caption)
    at.file_uploader(key="cmp_zip").set_value(("my_set.zip", labelled_zip(per_class=6), "application/zip")).run()
    assert not at.exception, at.exception
    metrics = _metrics(at)
    assert set(metrics.index) == {"tiny", "tiny_bench"}
    assert (metrics["n"] == 12).all()  # 6 real + 6 fake; the corrupt file is skipped
    assert (metrics["tn"] + metrics["fp"] == 6).all() and (metrics["fn"] + metrics["tp"] == 6).all()
    assert (metrics["ms_per_image"] > 0).all()  # measured now, for both models
    assert any(h.value.startswith("Metrics on your set") for h in at.subheader)
    assert any("1 file(s) could not be read" in w.value for w in at.warning)
    skipped = next(d.value for d in at.dataframe if "error" in d.value.columns)
    assert list(skipped["file"]) == ["set/fake/broken.jpg"]
    assert any("images/s" in c.value for c in at.caption)
    charts = _charts(at)
    assert any(_title(s).startswith("tiny @ ") for s in charts)  # confusion matrices
    assert any(_title(s).startswith("Reliability") for s in charts)
    per_source = next(d.value for d in at.dataframe if "source" in d.value.columns and "model" in d.value.columns)
    assert {"gan", "swap"} <= set(per_source["source"])
    # a rerun (moving a threshold) comes from the cache and re-labels without re-scoring
    at.slider(key="cmp_thr_tiny").set_value(0.0).run()
    assert not at.exception, at.exception
    assert any("from the cache" in c.value for c in at.caption)
    row = _metrics(at).loc["tiny"]
    assert row["tp"] == 6 and row["tn"] == 0


def test_compare_page_does_not_import_tensorflow_until_a_set_is_scored(compare_models):
    """The saved-predictions view (and the robustness charts) read CSVs only: a fresh process
    that renders the compare page must not have imported TensorFlow."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
            "at = AppTest.from_file('pages/compare.py', default_timeout=120).run()\n"
            "assert not at.exception, at.exception\n"
            "assert any(h.value.startswith('Metrics on test') for h in at.subheader), [h.value for h in at.subheader]\n"
            "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'NO-TF')\n")
    env = {**os.environ, "DEEPFAKE_LAB_MODELS": str(compare_models), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "NO-TF", done.stdout


def test_compare_page_scores_a_server_folder(compare_page, tmp_path):
    at = compare_page
    at.button_group(key="cmp_source").set_value("Your labelled set").run()
    at.text_input(key="cmp_folder").set_value(str(tmp_path / "missing")).run()
    assert not at.exception, at.exception
    assert any("not a folder" in e.value for e in at.error)
    with zipfile.ZipFile(io.BytesIO(labelled_zip(per_class=3, corrupt=False, prefix="deep/x/"))) as z:
        z.extractall(tmp_path / "set")
    at.text_input(key="cmp_folder").set_value(str(tmp_path / "set")).run()
    assert not at.exception, at.exception
    metrics = _metrics(at)
    assert (metrics["n"] == 6).all() and (metrics["ms_per_image"] > 0).all()
    assert not at.warning  # nothing skipped
