"""Shared fixtures: a tiny synthetic labelled dataset and one tiny trained run.

Everything is generated in pytest's tmp folders (no dataset images are read or copied)
and kept small (48 px JPEGs, a 32 px custom_cnn trained for one epoch) so the suite runs
on a busy two-core CPU.
"""
from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Decoded-pixel caches of the tests go to a throw-away folder, not ~/.cache.
if "DEEPFAKE_LAB_CACHE" not in os.environ:
    os.environ["DEEPFAKE_LAB_CACHE"] = tempfile.mkdtemp(prefix="deepfake-lab-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DEEPFAKE_LAB_CACHE"], ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"

TINY_SIZE = 48
PER_CLASS = 16
SOURCES = ("alpha", "beta")


def smooth_image(rng: np.random.Generator, size: int = TINY_SIZE) -> np.ndarray:
    """A 'real' picture: a random smooth colour gradient plus mild noise (uint8 HxWx3)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    base = rng.uniform(40, 200, 3)
    gx, gy = rng.uniform(-60, 60, 3), rng.uniform(-60, 60, 3)
    img = base + gx * xx[..., None] + gy * yy[..., None] + rng.normal(0, 4, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def fake_image(rng: np.random.Generator, size: int = TINY_SIZE) -> np.ndarray:
    """A 'fake' picture: the same kind of gradient plus a periodic high-frequency checker
    (3-pixel cells: 2-pixel cells at the 32 px training size; a generator-upsampling-like artefact) that a small CNN can pick up."""
    img = smooth_image(rng, size).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    checker = np.where(((yy // 3) + (xx // 3)) % 2 == 0, 1.0, -1.0)[..., None]
    img = img + rng.uniform(25, 40) * checker
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(rgb: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """An in-memory zip of name -> bytes (deflated), as an upload would carry it."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_split_root(root: Path, per_class: int = PER_CLASS, seed: int = 0,
                     splits=("train", "val", "test")) -> Path:
    """train/val/test x real/fake JPEGs plus MANIFEST.csv (path,label,source)."""
    rng = np.random.default_rng(seed)
    rows = ["path,label,source"]
    for split in splits:
        for label, make in (("real", smooth_image), ("fake", fake_image)):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                name = f"{label}_{i:03d}.jpg"
                (folder / name).write_bytes(jpeg_bytes(make(rng)))
                rows.append(f"{split}/{label}/{name},{label},{SOURCES[i % len(SOURCES)]}")
    (root / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A split root: {train,val,test}/{real,fake}/*.jpg (16 per class and split, 48 px),
    MANIFEST.csv giving every image one of two sources (alternating)."""
    return write_split_root(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """One custom_cnn run (32 px, one epoch) on the tiny dataset; returns its run folder."""
    from detector.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_run") / "tiny"
    train(TrainConfig(model="custom_cnn", data=str(tiny_dataset), out=str(out), epochs=1,
                      img_size=32, batch_size=8, verbose=0))
    return out


def tiny_experts_config(tiny_dataset, out, **kw):
    """Training settings of the tiny experts runs: Lite0 from scratch, 32 px, one epoch each."""
    from detector.training import TrainConfig

    kw = {"pretrained": False, **kw}
    return TrainConfig(model="efficientnet_lite0", data=str(tiny_dataset), out=str(out), epochs=1,
                       fine_tune_epochs=1, img_size=32, batch_size=8, verbose=0, **kw)


@pytest.fixture(scope="session")
def experts_run(tiny_dataset, tmp_path_factory):
    """(root, card) of a tiny source-experts model (`root / "routed"`), one branch per source."""
    from detector import experts

    root = tmp_path_factory.mktemp("experts")
    card = experts.train_experts(tiny_experts_config(tiny_dataset, root / "routed"), "block12_expand_conv",
                                 root / "experts")
    return root, card


@pytest.fixture(scope="session")
def tiny_run_novel(tiny_run, tiny_dataset, tmp_path_factory) -> Path:
    """A copy of the tiny run with a novelty reference fitted without its usability check
    (blurring the tiny run's smooth synthetic images changes nothing, so it cannot pass it):
    for the tests of how serving, the CLI and the robustness table use a reference."""
    from detector import novelty

    folder = tmp_path_factory.mktemp("tiny_novel") / "tiny_novel"
    shutil.copytree(tiny_run, folder, ignore=shutil.ignore_patterns("logs", "checkpoints"))
    novelty.fit_folder(folder, tiny_dataset, require_check=False)
    return folder


@pytest.fixture(scope="session")
def models_root(request, tmp_path_factory) -> Path:
    """The shipped models/ when it has any, else a folder holding the tiny run as "tiny"."""
    from detector import store

    shipped = REPO_ROOT / "models"
    if store.model_names(shipped):
        return shipped
    tiny_run = request.getfixturevalue("tiny_run")
    root = tmp_path_factory.mktemp("app_models")
    shutil.copytree(tiny_run, root / "tiny", ignore=shutil.ignore_patterns("logs", "checkpoints"))
    (root / "DEFAULT").write_text("tiny\n")
    return root


def open_page(relpath: str, monkeypatch, timeout: int = 120):
    """AppTest of one page file run once from the repository root (no exception allowed)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(REPO_ROOT)
    at = AppTest.from_file(str(REPO_ROOT / relpath), default_timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return at
