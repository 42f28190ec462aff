"""The command line (`python -m detector predict|evaluate|models`) and the inference path
behind it, on the tiny run of conftest.py."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO_ROOT, jpeg_bytes, smooth_image
from detector import evaluation, faces, images, inference
from detector.__main__ import main

EVALUATE_KEYS = {"model", "n", "threshold", "accuracy", "accuracy_ci", "precision", "recall", "f1", "auc",
                 "auc_ci", "ap", "eer", "confusion", "per_source", "seconds"}


def _gradient(h: int, w: int, seed: int = 5) -> np.ndarray:
    """A face-free picture of size h x w (a smooth gradient plus noise)."""
    return images.resize_to(smooth_image(np.random.default_rng(seed), 48), (w, h))


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _run_cli(args: list[str], models_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if models_dir is not None:
        env["DEEPFAKE_LAB_MODELS"] = str(models_dir)
    return subprocess.run([sys.executable, "-m", "detector", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    """One good image, one truncated JPEG and one text file named like an image."""
    folder = tmp_path_factory.mktemp("inbox")
    (folder / "good.jpg").write_bytes(jpeg_bytes(_gradient(40, 56)))
    (folder / "broken.jpg").write_bytes(jpeg_bytes(_gradient(40, 56))[:120])
    (folder / "notes.png").write_text("this is not a picture\n")
    return folder


@pytest.fixture(scope="module")
def models_dir(tiny_run, tmp_path_factory) -> Path:
    """A models/ folder: the tiny run as 'tiny' (the default) and a copy as 'alt'."""
    root = tmp_path_factory.mktemp("models")
    for name in ("alt", "tiny"):
        shutil.copytree(tiny_run, root / name, ignore=shutil.ignore_patterns("logs", "checkpoints"))
    (root / "DEFAULT").write_text("tiny\n")
    return root


# --- predict ------------------------------------------------------------------------------

def test_predict_reports_bad_files_and_scores_good_ones(inbox, tiny_run, tmp_path, capfd):
    out_csv = tmp_path / "rows.csv"
    rc = main(["predict", str(inbox), "--model", str(tiny_run), "--csv", str(out_csv)])
    captured = capfd.readouterr()
    assert rc == 0
    rows = _rows(captured.out)
    by_name = {}
    for r in rows:
        by_name.setdefault(Path(r["path"]).name, []).append(r)
    assert sorted(by_name) == ["broken.jpg", "good.jpg", "notes.png"]
    for bad in ("broken.jpg", "notes.png"):
        assert len(by_name[bad]) == 1
        assert by_name[bad][0]["error"] and by_name[bad][0]["p_fake"] == ""
    assert "corrupt" in by_name["broken.jpg"][0]["error"] or "truncated" in by_name["broken.jpg"][0]["error"]
    assert "not an image" in by_name["notes.png"][0]["error"]
    (good,) = by_name["good.jpg"]
    assert good["error"] == "" and good["kind"] == "no_face" and good["face"] == "1"
    assert (int(good["x"]), int(good["y"]), int(good["w"]), int(good["h"])) == (0, 0, 56, 40)
    p = float(good["p_fake"])
    assert 0.0 <= p <= 1.0
    det = inference.load_detector(str(tiny_run))
    expected = det.analyze_source(inbox / "good.jpg")
    assert p == pytest.approx(expected.p_fake, abs=1e-4)
    # no face: no REAL/FAKE, the reason instead (the score is still given)
    assert good["verdict"] == expected.verdict == inference.NO_FACE and "no face" in good["reason"]
    assert ("novelty" in good) == (det.familiarity is not None)  # a column only with a reference
    assert "1 of 3 images scored" in captured.err and "1 image(s) NO FACE / CANNOT JUDGE" in captured.err

    # --csv writes the same rows
    with open(out_csv, newline="") as fh:
        assert list(csv.DictReader(fh)) == rows


def test_predict_writes_each_faces_novelty_when_the_model_has_a_reference(inbox, tiny_run_novel, capfd, tmp_path):
    assert main(["predict", str(inbox / "good.jpg"), "--model", str(tiny_run_novel)]) == 0
    (row,) = _rows(capfd.readouterr().out)
    expected = inference.load_detector(str(tiny_run_novel)).analyze_source(inbox / "good.jpg").faces[0].novelty
    assert float(row["novelty"]) == pytest.approx(expected)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(noise)
    assert main(["predict", str(noise), "--model", str(tiny_run_novel)]) == 0
    captured = capfd.readouterr()
    (row,) = _rows(captured.out)
    said = "1 face(s) unlike the training faces" in captured.err
    assert said == (float(row["novelty"]) > 1)


def test_predict_gives_cannot_judge_to_a_small_or_unfamiliar_face(inbox, tiny_run_novel, capfd, tmp_path, monkeypatch):
    """A face region under MIN_FACE_SIDE px, or one the novelty check calls unfamiliar, is
    CANNOT JUDGE with its reason; a big familiar one gets REAL/FAKE (faces stubbed: no MTCNN)."""
    from detector import faces

    def one_face(side):
        def find(rgb):
            return [faces.FaceRegion((0, 0, side, side), (2, 2, side - 4, side - 4), 0.99, "face",
                                     rgb[:side, :side].copy())]
        return find

    path = tmp_path / "photo.png"
    Image.fromarray(_gradient(200, 240)).save(path)
    monkeypatch.setattr(faces, "find_faces", one_face(inference.MIN_FACE_SIDE - 1))
    assert main(["predict", str(path), "--model", str(tiny_run_novel)]) == 0
    (row,) = _rows(capfd.readouterr().out)
    assert row["verdict"] == inference.CANNOT_JUDGE and f"{inference.MIN_FACE_SIDE - 1} px" in row["reason"]
    monkeypatch.setattr(faces, "find_faces", one_face(inference.MIN_FACE_SIDE + 100))
    assert main(["predict", str(path), "--model", str(tiny_run_novel)]) == 0
    (row,) = _rows(capfd.readouterr().out)
    if float(row["novelty"]) > 1:
        assert row["verdict"] == inference.CANNOT_JUDGE and "unlike the faces" in row["reason"]
    else:
        assert row["verdict"] in (inference.REAL, inference.FAKE) and row["reason"] == ""


def test_predict_fails_when_nothing_scored(inbox, tiny_run, tmp_path, capfd):
    rc = main(["predict", str(inbox / "broken.jpg"), str(inbox / "notes.png"),
               str(tmp_path / "missing.jpg"), "--model", str(tiny_run)])
    rows = _rows(capfd.readouterr().out)
    assert rc != 0
    assert len(rows) == 3 and all(r["error"] for r in rows)
    assert "not found" in rows[2]["error"]


def test_predict_threshold_override(tiny_run, capfd, tmp_path, monkeypatch):
    from detector import faces

    # an image taken as one face crop (no MTCNN), big enough to be judged
    monkeypatch.setattr(faces, "find_faces", lambda rgb: [faces.whole_image_region(rgb, "face_crop")])
    path = tmp_path / "crop.png"
    Image.fromarray(_gradient(inference.MIN_FACE_SIDE, inference.MIN_FACE_SIDE)).save(path)
    assert main(["predict", str(path), "--model", str(tiny_run), "--threshold", "0"]) == 0
    assert _rows(capfd.readouterr().out)[0]["verdict"] == inference.FAKE
    assert main(["predict", str(path), "--model", str(tiny_run), "--threshold", "1.01"]) == 0
    assert _rows(capfd.readouterr().out)[0]["verdict"] == inference.REAL


# --- evaluate -----------------------------------------------------------------------------

def test_evaluate_says_how_many_images_the_model_finds_unfamiliar(tiny_dataset, tiny_run_novel, tiny_run):
    from detector import data
    from detector.__main__ import evaluate_folder

    result = evaluate_folder(str(tiny_dataset), str(tiny_run_novel))
    det = inference.load_detector(str(tiny_run_novel))
    frame = data.scan(tiny_dataset)
    frame = frame[frame["split"] == "test"].reset_index(drop=True)
    flagged = det.score(data.load_pixels(frame["path"].tolist(), det.size, progress=False)).novelty > 1
    assert result["unfamiliar"] == pytest.approx(flagged.mean())
    for source, v in result["per_source"].items():
        assert v["unfamiliar"] == pytest.approx(flagged[(frame["source"] == source).to_numpy()].mean())
    if inference.load_detector(str(tiny_run)).familiarity is None:  # no reference: no such key
        assert "unfamiliar" not in evaluate_folder(str(tiny_dataset), str(tiny_run))

@pytest.mark.slow
def test_evaluate_json_prints_one_object(tiny_dataset, tiny_run, models_dir):
    """Through the real entry point: stdout must be exactly one JSON object (logs go elsewhere);
    the model is named as shipped, found via DEEPFAKE_LAB_MODELS."""
    proc = _run_cli(["evaluate", str(tiny_dataset), "--model", "tiny", "--json"], models_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    result = json.loads(lines[0])
    assert isinstance(result, dict) and EVALUATE_KEYS <= set(result)
    assert result["model"] == "tiny" and result["n"] == 32
    assert set(result["confusion"]) == {"tn", "fp", "fn", "tp"}
    assert sum(result["confusion"].values()) == result["n"]
    assert set(result["per_source"]) == {"alpha", "beta"}
    for v in [result, *result["per_source"].values()]:  # 95% intervals around each number
        lo, hi = v["accuracy_ci"]
        assert lo <= v["accuracy"] <= hi and hi - lo > 0.05  # 16-32 images: wide
        if v["auc"] is not None:
            assert v["auc_ci"][0] <= v["auc"] <= v["auc_ci"][1]
    card = json.loads((tiny_run / "card.json").read_text())
    assert result["threshold"] == pytest.approx(card["threshold"])
    assert result["accuracy"] == pytest.approx(card["metrics"]["test"]["accuracy"], abs=1 / 32 + 1e-9)
    c = result["confusion"]
    assert result["accuracy"] == pytest.approx((c["tp"] + c["tn"]) / result["n"])


def test_evaluate_text_output(tiny_dataset, tiny_run, capfd):
    assert main(["evaluate", str(tiny_dataset / "val"), "--model", str(tiny_run)]) == 0
    out = capfd.readouterr().out
    assert "32 images" in out and "accuracy" in out and "confusion tn=" in out
    accuracy = next(line for line in out.splitlines() if line.strip().startswith("accuracy"))
    assert accuracy.count("[") == 1 and "95% confidence intervals" in out


# --- models -------------------------------------------------------------------------------

def test_models_lists_shipped_models(models_dir, tiny_run):
    proc = _run_cli(["models"], models_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    tiny = [line for line in lines if " tiny " in f" {line} "]
    alt = [line for line in lines if " alt " in f" {line} "]
    assert len(tiny) == 1 and len(alt) == 1
    assert tiny[0].startswith("*") and not alt[0].startswith("*")
    assert lines.index(tiny[0]) < lines.index(alt[0])  # the default is listed first
    assert "custom_cnn" in tiny[0]

    proc = _run_cli(["models", "--json"], models_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = json.loads(proc.stdout)
    card = json.loads((tiny_run / "card.json").read_text())
    assert [m["name"] for m in listed] == ["tiny", "alt"]
    assert [m["default"] for m in listed] == [True, False]
    assert listed[0]["architecture"] == "custom_cnn" and listed[0]["input_size"] == 32
    assert listed[0]["test"]["accuracy"] == pytest.approx(card["metrics"]["test"]["accuracy"])


def test_models_table_keeps_long_names_apart(tiny_run, tmp_path):
    long_name = "a_model_name_longer_than_any_column"
    shutil.copytree(tiny_run, tmp_path / long_name, ignore=shutil.ignore_patterns("logs", "checkpoints"))
    (tmp_path / "DEFAULT").write_text(long_name + "\n")
    proc = _run_cli(["models"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if long_name in line)
    assert row.split()[:3] == ["*", long_name, "custom_cnn"]


def test_models_empty_folder(tmp_path):
    proc = _run_cli(["models"], tmp_path)
    assert proc.returncode != 0
    assert "no models" in proc.stdout


# --- inference ----------------------------------------------------------------------------

def test_analyze_scores_the_whole_image_when_no_face(tiny_run):
    import keras

    det = inference.load_detector(str(tiny_run))
    rgb = _gradient(40, 56)
    result = det.analyze(rgb)
    assert len(result.faces) == 1 and result.no_face
    face = result.faces[0]
    assert face.region.kind == "no_face" and face.region.box == (0, 0, 56, 40)

    model = keras.saving.load_model(tiny_run / "model.keras", safe_mode=True, compile=False)
    x = images.resize_to(rgb, det.size)[None].astype("float32")
    raw = float(model.predict(x, verbose=0)[0, 0])
    expected = float(evaluation.apply_temperature(np.array([raw]), det.temperature, det.bias)[0])
    assert face.p_fake == pytest.approx(expected, abs=1e-5)
    # scored, but no REAL/FAKE: the models only know faces (inference.cannot_judge)
    assert face.verdict == inference.NO_FACE and face.reason == inference.NO_FACE_REASON
    assert result.threshold == det.threshold and result.model == tiny_run.name


def test_gradcam_heatmaps(tiny_run):
    from detector import explain, faces

    det = inference.load_detector(str(tiny_run))
    for h, w in ((48, 48), (40, 72)):
        rgb = _gradient(h, w, seed=h)
        region = faces.whole_image_region(rgb, kind="no_face")
        result = det.analyze(rgb, gradcam=True, regions=[region])
        heat = result.faces[0].heatmap
        assert heat is not None and heat.ndim == 2 and np.isfinite(heat).all()
        assert heat.min() >= 0.0 and heat.max() <= 1.0
        assert heat.max() == pytest.approx(1.0) or heat.max() == 0.0  # normalised to its peak
        assert heat.shape[0] == heat.shape[1]  # the model sees a square crop
        shown = explain.overlay(rgb, heat)
        assert shown.shape == rgb.shape and shown.dtype == np.uint8  # drawn at the crop's aspect
    # same crops through heatmaps(): one map per crop
    maps = det.heatmaps([_gradient(48, 48), _gradient(30, 30, seed=2)])
    assert len(maps) == 2 and all(m.shape == maps[0].shape for m in maps)


def test_compiled_gradcam_matches_an_eager_gradient_tape(tiny_run):
    """explain.gradcam runs as a tf.function; it must give the textbook eager Grad-CAM."""
    import keras
    import tensorflow as tf

    from detector import explain

    det = inference.load_detector(str(tiny_run))
    batch = det.prepare([_gradient(48, 48, seed=s) for s in range(3)]).astype(np.float32)
    grad_model = keras.Model(det.model.inputs, [det.model.get_layer(det.gradcam_layer).output, det.model.output])
    with tf.GradientTape() as tape:
        conv, pred = grad_model(batch, training=False)
        score = pred[:, 0]
    grads = tape.gradient(score, conv)
    cam = tf.nn.relu(tf.reduce_sum(conv * tf.reduce_mean(grads, axis=(1, 2), keepdims=True), axis=-1)).numpy()
    peak = cam.reshape(3, -1).max(axis=1).reshape(-1, 1, 1)
    want = np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0)
    got = explain.gradcam(det.model, batch, det.gradcam_layer)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert explain.gradcam(det.model, batch[:1], det.gradcam_layer).shape == got[:1].shape  # any batch size


def test_verdict_band_gives_uncertain(tiny_run):
    v = inference.verdict_for
    assert v(0.55, 0.5, band=0.1) == inference.UNCERTAIN
    assert v(0.45, 0.5, band=0.1) == inference.UNCERTAIN
    assert v(0.65, 0.5, band=0.1) == inference.FAKE
    assert v(0.35, 0.5, band=0.1) == inference.REAL
    assert v(0.5, 0.5) == inference.FAKE and v(0.4999, 0.5) == inference.REAL

    det = inference.load_detector(str(tiny_run))
    rgb = _gradient(96, 96)
    face = [faces.FaceRegion((0, 0, 96, 96), (10, 10, 70, 70), 0.99, "face", rgb)]  # a judgeable face region
    p = det.analyze(rgb, regions=face).p_fake
    assert det.analyze(rgb, regions=face, threshold=p, band=0.05).verdict == inference.UNCERTAIN
    assert det.analyze(rgb, regions=face, threshold=min(p + 0.2, 1.0), band=0.05).verdict == inference.REAL


def test_jet_colour_map_matches_matplotlib():
    """explain.jet is matplotlib's 'jet' without importing matplotlib on the serving path."""
    from matplotlib import colormaps

    from detector.explain import jet

    v = np.linspace(0, 1, 257)
    np.testing.assert_allclose(jet(v), colormaps["jet"](v)[:, :3], atol=0.02)


# --- compare (stored predictions, no TensorFlow) ------------------------------------------------

def _stored_pair(tiny_run, root: Path) -> tuple[Path, Path]:
    """Two copies of the tiny run whose test predictions are set by hand: on 19 images A is
    right 18 times, B 11 times; 8 images only A gets right, 1 only B (exact McNemar p = 20/512)."""
    label = ["fake"] * 18 + ["real"]
    scores = {"a": [0.9] * 18 + [0.9], "b": [0.9] * 10 + [0.1] * 8 + [0.1]}
    out = []
    for name, p in scores.items():
        folder = root / name
        shutil.copytree(tiny_run, folder, ignore=shutil.ignore_patterns("checkpoints", "logs"))
        card = json.loads((folder / "card.json").read_text())
        (folder / "card.json").write_text(json.dumps({**card, "threshold": 0.5}))
        pd.DataFrame({"split": "test", "path": [f"test/{i}.jpg" for i in range(19)],
                      "source": ["gan"] * 10 + ["swap"] * 9, "label": label, "p_fake": p}
                     ).to_csv(folder / "predictions.csv", index=False)
        out.append(folder)
    return out[0], out[1]


def test_compare_tests_two_models_on_their_stored_predictions(tiny_run, tmp_path, capfd):
    a, b = _stored_pair(tiny_run, tmp_path)
    assert main(["compare", str(a), str(b), "--json"]) == 0
    result = json.loads(capfd.readouterr().out)
    assert result["split"] == "test" and set(result["models"]) == {"a", "b"}
    assert result["models"]["a"]["accuracy"] == pytest.approx(18 / 19)
    lo, hi = result["models"]["b"]["accuracy_ci"]
    assert lo < 11 / 19 < hi
    pair = result["pairs"][0]
    assert (pair["model_a"], pair["model_b"], pair["n"]) == ("a", "b", 19)
    assert (pair["only_a"], pair["only_b"]) == (8, 1)
    assert pair["accuracy_p"] == pytest.approx(20 / 512)
    assert pair["finding"].startswith("a: more accurate")
    # one source only: the 10 "gan" images, all fakes both models call fake: nothing to tell apart
    assert main(["compare", str(a), str(b), "--source", "gan", "--json"]) == 0
    gan = json.loads(capfd.readouterr().out)
    assert gan["pairs"][0]["n"] == 10 and gan["pairs"][0]["accuracy_p"] == 1.0
    assert gan["models"]["a"]["auc"] is None  # one class: no AUC, no interval
    assert main(["compare", str(a), str(b)]) == 0
    text = capfd.readouterr().out
    assert "only A right 8, only B right 1" in text and "a: more accurate" in text


def test_compare_refuses_what_it_cannot_compare(tiny_run, tmp_path, capfd):
    a, b = _stored_pair(tiny_run, tmp_path)
    assert main(["compare", str(a)]) == 1
    assert "at least two models" in capfd.readouterr().err
    assert main(["compare", str(a), str(b), "--split", "val"]) == 1
    assert "no stored val predictions" in capfd.readouterr().err
    assert main(["compare", str(a), str(b), "--source", "diffusion"]) == 1
    assert "no test images of source 'diffusion'" in capfd.readouterr().err
    assert main(["compare", str(a), "no_such_model"]) == 1
    assert "unknown model" in capfd.readouterr().err
