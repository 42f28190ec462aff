"""Tests for detector.robustness on a tiny trained model and a tiny generated dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detector import data, evaluation, images, robustness

pytest.importorskip("keras")

from detector.__main__ import main  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_run_novel, tiny_dataset) -> tuple[Path, Path]:
    """(model folder, data root): the shared tiny run with a novelty reference, and its data
    (tests/conftest.py)."""
    return tiny_run_novel, tiny_dataset


def smooth(seed=0, size=64):
    rng = np.random.default_rng(seed)
    return images.resize_to(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), size)


# --- perturbations ------------------------------------------------------------------------

def test_identity_levels_return_the_input():
    rgb = smooth()
    for kind, level in (("jpeg_quality", "none"), ("downscale", 1.0), ("gaussian_blur", 0)):
        assert robustness.is_identity(kind, level)
        assert robustness.perturb(rgb, kind, level) is rgb
    with pytest.raises(ValueError):
        robustness.is_identity("rotate", 5)


def test_perturbations_change_pixels_and_keep_the_size():
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)  # noisy, not square
    for kind, levels in robustness.PERTURBATIONS.items():
        for level in levels:
            out = robustness.perturb(rgb, kind, level)
            assert out.shape == rgb.shape and out.dtype == np.uint8
            if not robustness.is_identity(kind, level):
                assert np.abs(out.astype(int) - rgb).mean() > 1, (kind, level)
    # stronger levels degrade more: blur removes detail, JPEG error grows as quality drops
    err = [np.abs(robustness.perturb(rgb, "jpeg_quality", q).astype(int) - rgb).mean() for q in (95, 60, 30)]
    assert err[0] < err[1] < err[2]
    std = [robustness.perturb(rgb, "gaussian_blur", s).std() for s in (0, 0.5, 1, 2)]
    assert std == sorted(std, reverse=True)
    # JPEG goes through a real encode: quality 95 of a smooth picture stays close
    assert np.abs(robustness.perturb(smooth(), "jpeg_quality", 95).astype(int) - smooth()).mean() < 3


def test_sample_is_stratified_and_seeded():
    frame = pd.DataFrame({"path": [f"p{i}" for i in range(40)], "rel": [f"r{i:02d}" for i in range(40)],
                          "split": "test", "label": [i % 2 for i in range(40)], "source": ""})
    a = robustness.sample_frame(frame, 10, seed=3)
    assert len(a) == 10 and a["label"].sum() == 5
    assert a.equals(robustness.sample_frame(frame, 10, seed=3))
    assert len(robustness.sample_frame(frame, None)) == 40 and len(robustness.sample_frame(frame, 99)) == 40


# --- the table on a tiny model ------------------------------------------------------------

def test_writes_every_row_and_identity_rows_equal_plain_metrics(tiny):
    model_dir, root = tiny
    table = robustness.run(str(model_dir), root, n=None, progress=False)
    csv = pd.read_csv(model_dir / "robustness.csv", dtype={"level": str})
    assert list(csv.columns) == ["perturbation", "level", "n", "accuracy", "auc", "unfamiliar", "accuracy_familiar"]
    want = [(k, str(v)) for k, levels in robustness.PERTURBATIONS.items() for v in levels]
    assert list(zip(csv["perturbation"], csv["level"])) == want  # 7 + 5 + 6 rows, in order
    n_test = int((data.scan(root)["split"] == "test").sum())
    assert (csv["n"] == n_test).all() and len(table) == len(want)

    # the plain serving path: data.load_pixels (one decoder, one resize) -> score at the card threshold
    from detector import inference

    det = inference.load_detector(str(model_dir))
    frame = data.scan(root)
    frame = frame[frame["split"] == "test"]
    frame = frame.sort_values("rel")
    x = data.load_pixels(frame["path"].tolist(), det.size, use_cache=False, progress=False)
    plain = evaluation.binary_metrics(frame["label"].to_numpy(), det.score_batch(x), det.threshold)
    identity = csv[[robustness.is_identity(k, v if k == "jpeg_quality" else float(v))
                    for k, v in zip(csv["perturbation"], csv["level"])]]
    assert len(identity) == 3
    for r in identity.itertuples():
        assert r.accuracy == pytest.approx(plain["accuracy"], abs=1e-4)
        assert r.auc == pytest.approx(plain["auc"], abs=1e-4)
    assert csv["accuracy"].between(0, 1).all() and csv["auc"].between(0, 1).all()

    # and image by image: the robustness path scores identity pixels exactly like serving
    sample, rgbs = robustness.load_sample(root, None)
    same = data.load_pixels(sample["path"].tolist(), det.size, use_cache=False, progress=False)
    scored = det.score_crops(rgbs)
    np.testing.assert_allclose(scored.p_fake, det.score_batch(same), atol=1e-6)
    worse = det.score_crops([robustness.perturb(r, "downscale", 0.25) for r in rgbs]).p_fake
    assert not np.allclose(worse, det.score_batch(same), atol=1e-4)

    # the tiny run has a novelty reference: each row says how many images it no longer knows,
    # and how the model does on the others
    familiar = scored.novelty <= 1
    first = csv.iloc[0]
    assert first["unfamiliar"] == pytest.approx(1 - familiar.mean(), abs=1e-4)
    right = (scored.p_fake >= det.threshold) == sample["label"].to_numpy()
    assert first["accuracy_familiar"] == pytest.approx(right[familiar].mean(), abs=1e-4)
    assert csv["unfamiliar"].between(0, 1).all()


def test_cli_prints_the_table(tiny, capsys):
    model_dir, root = tiny
    assert main(["robustness", "--model", str(model_dir), "--data", str(root), "--n", "8"]) == 0
    out = capsys.readouterr().out
    assert "jpeg_quality" in out and "gaussian_blur" in out and "8 test images" in out
    assert len(pd.read_csv(model_dir / "robustness.csv")) == 18
    assert "unfamiliar" in out and "acc. familiar" in out


def test_cli_reports_a_missing_folder(tiny, tmp_path, capsys):
    model_dir, _ = tiny
    assert main(["robustness", "--model", str(model_dir), "--data", str(tmp_path / "nope")]) == 1
    assert "not found" in capsys.readouterr().err
