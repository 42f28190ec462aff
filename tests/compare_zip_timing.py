"""How long the compare page takes on a labelled zip of 40 images (20 real, 20 fake) with the
three shipped models. Not a test (no test_ prefix): run it by hand.

    .venv/bin/python tests/compare_zip_timing.py            # the page's scoring function
    .venv/bin/python tests/compare_zip_timing.py --apptest  # the whole page, headless (AppTest)

The zip is built in memory at run time from ../shared/data/test (the first 20 files of real/
and of fake/ by name); nothing is written to disk or copied into the repository. Without that
folder the script says so and exits 0. It is scored by `app/ui.labelled_zip_scores`, the
function the page calls (read + decode in memory, then `comparison.score_labelled`), in a fresh
process, so the time includes importing TensorFlow and loading the models: what the first
user of a freshly started app waits.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT.parent / "shared" / "data" / "test"
PER_CLASS = 20
LIMIT_S = 60.0
T0 = time.perf_counter()


def build_zip(folder: Path = TEST_DATA, per_class: int = PER_CLASS) -> bytes:
    """A zip (in memory) of `per_class` images from each of folder/real and folder/fake."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for label in ("real", "fake"):
            files = sorted(p for p in (folder / label).iterdir() if p.is_file())[:per_class]
            if len(files) < per_class:
                raise SystemExit(f"{folder / label} holds {len(files)} files, {per_class} needed")
            for path in files:
                z.writestr(f"set/{label}/{path.name}", path.read_bytes())
    return buf.getvalue()


def time_function(blob: bytes, models: list[str]) -> float:
    from app import ui

    t0 = time.perf_counter()
    result = ui.labelled_zip_scores(blob, models)
    wall = time.perf_counter() - t0
    frame = result["frame"]
    assert result["n_images"] == 2 * PER_CLASS and not result["errors"], result["errors"]
    assert len(frame) == 2 * PER_CLASS * len(models)
    print(f"labelled_zip_scores: {result['n_images']} images x {len(models)} models in {wall:.1f} s wall "
          f"(read + decode {result['read_seconds']:.2f} s, loading models + scoring "
          f"{result['seconds'] - result['read_seconds']:.1f} s, of which scoring {result['score_seconds']:.2f} s)")
    for m in models:
        part = frame[frame["model"] == m]
        correct = ((part["p_fake"] >= ui.card(m)["threshold"]) == (part["label"] == "fake")).mean()
        print(f"  {m}: {result['ms_per_image'][m]:.1f} ms per image, accuracy {correct:.1%} at its threshold")
    return wall


def time_page(blob: bytes, models: list[str]) -> float:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO_ROOT / "streamlit_app.py"), default_timeout=300).run()
    at.switch_page("app/pages/compare.py").run()
    at.multiselect(key="cmp_models").set_value(models).run()
    at.button_group(key="cmp_source").set_value("Your labelled set").run()
    t0 = time.perf_counter()
    at.file_uploader(key="cmp_zip").set_value(("forty.zip", blob, "application/zip")).run()
    wall = time.perf_counter() - t0
    assert not at.exception, at.exception
    metrics = next(d.value for d in at.dataframe if "ms_per_image" in d.value.columns)
    assert sorted(metrics["model"]) == sorted(models) and (metrics["n"] == 2 * PER_CLASS).all()
    print(f"AppTest (upload -> every table and chart drawn): {wall:.1f} s wall")
    print(metrics[["model", "n", "accuracy", "auc", "tn", "fp", "fn", "tp", "ms_per_image"]].to_string(index=False))
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apptest", action="store_true", help="time the whole page through AppTest instead")
    args = parser.parse_args()
    if not (TEST_DATA / "real").is_dir() or not (TEST_DATA / "fake").is_dir():
        print(f"skipped: {TEST_DATA} (real/ and fake/) is not on this machine")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO_ROOT))
    from detector import store

    models = store.model_names(store.MODELS_DIR)[:3]
    blob = build_zip()
    print(f"zip: {2 * PER_CLASS} images from {TEST_DATA}, {len(blob) / 1e6:.1f} MB in memory; "
          f"models: {', '.join(models)}")
    wall = time_page(blob, models) if args.apptest else time_function(blob, models)
    print(f"{'OK' if wall < LIMIT_S else 'TOO SLOW'}: {wall:.1f} s (limit {LIMIT_S:.0f} s); "
          f"this whole script: {time.perf_counter() - T0:.1f} s")
    return 0 if wall < LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
