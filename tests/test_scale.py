"""`predict --engine ray` (detector/scale.py): the same rows as the plain engine, resumable.

The Ray tests run a local Ray with 2 workers on a handful of files (two sample photos, two
generated pictures, a truncated JPEG and a text file named .jpg) with the tiny trained model,
and skip when Ray is not installed (it is an optional extra: requirements-scale.txt, which
requirements-dev.txt pulls in, so CI runs them).
"""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, fake_image, jpeg_bytes, smooth_image
from detector import scale
from detector.__main__ import main

VARYING = ("created_utc",)  # the custody block's time of the run: the one column two runs may differ in


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Sample photos (faces and none), generated pictures, and two hostile files."""
    folder = tmp_path_factory.mktemp("collection")
    for name in ("astronaut.jpg", "no_face_coffee.jpg"):
        shutil.copy(REPO_ROOT / "sample_images" / name, folder / name)
    rng = np.random.default_rng(3)
    (folder / "gen_real.jpg").write_bytes(jpeg_bytes(smooth_image(rng, 96)))
    sub = folder / "sub"
    sub.mkdir()
    (sub / "gen_fake.jpg").write_bytes(jpeg_bytes(fake_image(rng, 96)))
    (folder / "truncated.jpg").write_bytes(jpeg_bytes(smooth_image(rng, 96))[:150])
    (folder / "notes.jpg").write_text("a text file renamed .jpg\n")
    return folder


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return sorted(rows, key=lambda r: (r["path"], r["face"]))


def _same_rows(a: list[dict], b: list[dict]) -> None:
    """Same files, faces, boxes, verdicts, reasons, errors, digests; P(fake) within 1e-5."""
    assert [(r["path"], r["face"]) for r in a] == [(r["path"], r["face"]) for r in b]
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if k in VARYING:
                continue
            if k == "p_fake" and x[k]:
                assert float(x[k]) == pytest.approx(float(y[k]), abs=1e-5), x["path"]
            else:
                assert x[k] == y[k], (x["path"], k)


def test_list_files_reads_local_folders_and_file_urls(collection):
    """A folder lists its images recursively (as the plain engine); a file:// URL of the same
    folder lists the same files through pyarrow; a named file is kept as given."""
    local = scale.list_files([str(collection)])
    assert [Path(p).name for p in local] == ["astronaut.jpg", "gen_real.jpg", "no_face_coffee.jpg", "notes.jpg",
                                             "gen_fake.jpg", "truncated.jpg"]
    urls = scale.list_files([collection.resolve().as_uri()])
    assert [u.removeprefix("file://") for u in urls] == [str(Path(p).resolve()) for p in local]
    assert scale.read_any(urls[0]) == Path(local[0]).read_bytes()
    assert scale.read_any("file:///no/such/file.jpg") is None
    assert scale.list_files(["/no/such/file.jpg"]) == ["/no/such/file.jpg"]


def test_parquet_parts_share_one_schema(tmp_path):
    """Two batches, one only of error rows (no numbers at all), still read back as one table."""
    fields = ["path", "face", "p_fake", "unstable", "error", "sha256", "threshold"]
    out = scale.Output(str(tmp_path / "rows.parquet"), fields)
    out.write([{"path": "a.jpg", "face": 1, "p_fake": 0.25, "unstable": None, "error": "", "sha256": "aa",
                "threshold": 0.5}])
    out.write([{"path": "b.jpg", "error": "truncated", "sha256": "bb"}])
    table = pd.read_parquet(tmp_path / "rows.parquet")
    assert sorted(table["path"]) == ["a.jpg", "b.jpg"]
    assert scale.Output(str(tmp_path / "rows.parquet"), fields).done == {"a.jpg": "aa", "b.jpg": "bb"}
    with pytest.raises(scale.ScaleError, match="other columns"):
        scale.Output(str(tmp_path / "rows.parquet"), fields + ["novelty"])


def test_ray_engine_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(scale.ScaleError, match="requirements-scale.txt"):
        scale.start_ray(None, 2)


def test_ray_engine_needs_an_output_file(collection, tiny_run, capsys):
    assert main(["predict", str(collection), "--engine", "ray", "--model", str(tiny_run)]) == 2
    assert "--csv" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_rows_equal_the_plain_engines(collection, tiny_run, tmp_path, capsys):
    """2 local workers, batches of 2: every row of the plain engine, the error rows included,
    and nothing else; the local Ray it started is shut down again."""
    pytest.importorskip("ray")
    import ray

    plain, distributed = tmp_path / "plain.csv", tmp_path / "ray.csv"
    assert main(["predict", str(collection), "--model", str(tiny_run), "--csv", str(plain)]) == 0
    assert main(["predict", str(collection), "--engine", "ray", "--workers", "2", "--batch-size", "2",
                 "--model", str(tiny_run), "--csv", str(distributed)]) == 0
    err = capsys.readouterr().err
    assert "4 of 6 images scored" in err and "2 could not be read or decoded" in err
    assert not ray.is_initialized()
    a, b = _read(plain), _read(distributed)
    _same_rows(a, b)
    errors = {Path(r["path"]).name: r["error"] for r in b if r["error"]}
    assert set(errors) == {"truncated.jpg", "notes.jpg"}
    assert {r["verdict"] for r in b if not r["error"]} <= {"REAL", "FAKE", "NO FACE", "CANNOT JUDGE"}
    assert all(r["sha256"] for r in b)


@pytest.fixture(scope="module")
def local_ray():
    """One local 2-CPU Ray for the resume tests (scale.run leaves a Ray it did not start)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_rerun_scores_only_what_is_missing_or_changed(collection, tiny_run, tmp_path, local_ray, suffix):
    """A re-run with the same output skips files already in it (by path and SHA-256); files
    lost with a killed job's last batch are scored; a file whose bytes changed is scored again."""
    folder = tmp_path / "in"
    shutil.copytree(collection, folder)
    out = str(tmp_path / f"rows{suffix}")
    first = scale.run([str(folder)], out, str(tiny_run), workers=2, batch_size=2, progress=False)
    assert (first["scored"], first["failed"], first["already"]) == (4, 2, 0)

    def rows():
        frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
        return frame.sort_values(["path", "face"]).reset_index(drop=True)

    full = rows()
    again = scale.run([str(folder)], out, str(tiny_run), workers=2, batch_size=2, progress=False)
    assert (again["scored"], again["failed"], again["already"]) == (0, 0, 6)
    assert len(rows()) == len(full)
    if suffix == ".parquet":
        return  # the rest is the same code for both formats (each Ray run here costs ~20 s)

    # a killed job: the rows of two files never reached the output
    lost = {str(folder / "astronaut.jpg"), str(folder / "sub" / "gen_fake.jpg")}
    kept = full[~full["path"].isin(lost)]
    shutil.rmtree(out) if suffix == ".parquet" else Path(out).unlink()
    output = scale.Output(out, list(full.columns))
    output.write(kept.astype(object).where(kept.notna(), None).to_dict("records"))
    resumed = scale.run([str(folder)], out, str(tiny_run), workers=2, batch_size=2, progress=False)
    assert (resumed["scored"], resumed["already"]) == (2, 4)
    back = rows()
    pd.testing.assert_frame_equal(back.drop(columns=list(VARYING)), full.drop(columns=list(VARYING)),
                                  check_dtype=False)

    (folder / "gen_real.jpg").write_bytes(jpeg_bytes(smooth_image(np.random.default_rng(9), 96)))
    changed = scale.run([str(folder)], out, str(tiny_run), workers=2, batch_size=2, progress=False)
    assert (changed["scored"], changed["already"]) == (1, 5)


@pytest.mark.slow
def test_bench_engines_times_each_engine_on_the_same_images(collection, tiny_run, capsys):
    """`bench --engines`: one line per engine, every run over the same files (the error
    files included), the plain engine's ratio 1 and the Ray runs' ratios their rates over it."""
    pytest.importorskip("ray")
    result = scale.bench_engines(str(collection), str(tiny_run), n=3, workers=(1,))
    assert result["n"] == 3
    assert [(r["engine"], r["workers"], r["images"]) for r in result["runs"]] == [("plain", 1, 3), ("ray", 1, 3)]
    plain, ray_run = result["runs"]
    assert plain["ratio"] == 1.0
    assert ray_run["ratio"] == pytest.approx(ray_run["images_per_s"] / plain["images_per_s"])
    assert all(r["seconds"] > 0 for r in result["runs"])
    assert "x plain" in scale.format_bench(result)
