"""Tests for detector.audit on tiny generated datasets (no dataset files needed).

The planted dataset has: an exact duplicate inside train, a cross-split near duplicate
(a train image re-saved at another JPEG quality into test), a truncated JPEG, a text file
posing as a JPEG, and a compression shortcut (fakes at quality 60, reals at 95).
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import open_page
from detector import audit, images
from detector.__main__ import main

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def smooth_image(seed: int, size: int = 64) -> np.ndarray:
    """A random smooth picture: 8x8 random colours blown up (distinct dhash per seed)."""
    rng = np.random.default_rng(seed)
    return images.resize_to(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), size)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_root(root: Path, q_real: int = 95, q_fake: int = 60, plant: bool = True) -> Path:
    seed = 0
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for label, q in (("real", q_real), ("fake", q_fake)):
            for i in range(n):
                write(root / split / label / f"{label}_{i}.jpg", images.encode_jpeg(smooth_image(seed), q))
                seed += 1
    if plant:
        # exact duplicate inside train (same bytes, another name)
        shutil.copy(root / "train/real/real_0.jpg", root / "train/real/real_0_copy.jpg")
        # cross-split near duplicate: train/real/real_1 re-saved at quality 60 into test/fake
        write(root / "test/fake/leak.jpg", images.encode_jpeg(smooth_image(1), q_fake))
        # unreadable: a truncated JPEG and text named .jpg
        noise = np.random.default_rng(99).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        good = images.encode_jpeg(noise, q_fake)  # mostly scan data: the cut lands in it
        write(root / "val/fake/truncated.jpg", good[: len(good) // 2])
        write(root / "test/real/notes.jpg", b"this is not an image\n")
    return root


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict]:
    root = make_root(tmp_path_factory.mktemp("planted"))
    return root, audit.audit(root, progress=False)


# --- building blocks ----------------------------------------------------------------------

def test_ijg_table_at_50_is_the_standard_table():
    assert np.array_equal(images.ijg_table(50), images.IJG_LUMINANCE)
    assert images.ijg_table(100).max() == 1
    assert images.ijg_table(1).min() > images.ijg_table(50).max()  # coarser everywhere


@pytest.mark.parametrize("quality", [30, 45, 60, 75, 90, 95])
def test_quality_estimate_matches_the_quality_saved_with(quality, tmp_path):
    blob = images.encode_jpeg(smooth_image(3), quality)
    with Image.open(io.BytesIO(blob)) as img:
        assert images.estimate_jpeg_quality(img.quantization[0]) == quality
    assert audit.inspect_file(write(tmp_path / "x.jpg", blob)).quality == quality


def test_quality_estimate_rejects_a_wrong_table():
    with pytest.raises(ValueError):
        images.estimate_jpeg_quality([1, 2, 3])
    assert images.jpeg_quality({0: [1, 2, 3]}) is None
    assert images.jpeg_quality(None) is None and images.jpeg_quality({}) is None


def test_quality_estimate_reads_the_lowest_numbered_table():
    """The luminance table is the lowest-numbered one, whatever its id (the audit's rule,
    kept when the forensics copy, which read only table 0, was folded into images)."""
    assert images.jpeg_quality({1: images.ijg_table(70), 2: images.ijg_table(20)}) == 70


def test_quality_estimate_compares_entries_in_place_not_sorted():
    """The one estimator matches entry by entry (natural order, as Pillow returns the
    table); the folded forensics copy compared sorted values, so a table with the q=75
    values in another order still read as 75. Entry by entry it is far from every IJG table
    and lands elsewhere."""
    table = images.ijg_table(75)
    shuffled = table[np.argsort(-table, kind="stable")]  # same values, reversed magnitude order
    assert images.estimate_jpeg_quality(table) == 75
    assert images.estimate_jpeg_quality(shuffled) != 75


def test_dhash_survives_recompression_and_separates_pictures():
    a = smooth_image(5, 128)
    h95 = audit.dhash(images.decode_image(images.encode_jpeg(a, 95)))
    h30 = audit.dhash(images.decode_image(images.encode_jpeg(a, 30)))
    other = audit.dhash(smooth_image(6, 128))
    assert bin(h95 ^ h30).count("1") <= audit.NEAR_DISTANCE
    assert bin(h95 ^ other).count("1") > 12
    # bit layout: left brighter than right -> 1; a left-to-right dark ramp sets every bit
    ramp = np.repeat(np.repeat(np.linspace(255, 0, 90).astype(np.uint8)[None, :, None], 80, 0), 3, 2)
    assert audit.dhash(ramp) == 2 ** 64 - 1
    assert audit.dhash(ramp[:, ::-1].copy()) == 0


def test_hamming_pairs_equals_brute_force():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2 ** 63, 300, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    h[17] = h[250] ^ np.uint64(0b1011)          # distance 3
    h[40] = h[41] ^ np.uint64(1 << 63)          # distance 1 (top bit)
    h[100] = h[5]                               # distance 0
    got = sorted(audit.hamming_pairs(h, 4, chunk=64))
    want = sorted((i, j, bin(int(h[i]) ^ int(h[j])).count("1")) for i in range(len(h))
                  for j in range(i + 1, len(h)) if bin(int(h[i]) ^ int(h[j])).count("1") <= 4)
    assert got == want
    assert (5, 100, 0) in got and (17, 250, 3) in got and (40, 41, 1) in got


def test_thumb_similarity(tmp_path):
    a = audit.inspect_file(write(tmp_path / "a.jpg", images.encode_jpeg(smooth_image(8), 95))).thumb
    b = audit.inspect_file(write(tmp_path / "b.jpg", images.encode_jpeg(smooth_image(8), 40))).thumb
    c = audit.inspect_file(write(tmp_path / "c.jpg", images.encode_jpeg(smooth_image(9), 95))).thumb
    assert audit.thumb_similarity(a, b) > 0.98
    assert audit.thumb_similarity(a, c) < 0.9
    assert audit.thumb_similarity(a, a * 0.5 + 20) == pytest.approx(1.0)  # contrast/brightness
    flat = np.full((16, 16), 7.0)
    assert audit.thumb_similarity(flat, flat) == 1.0 and audit.thumb_similarity(flat, a) == 0.0


# --- the planted dataset ------------------------------------------------------------------

def test_counts(planted):
    _, r = planted
    c = r["counts"]
    assert c["train"] == {"real": 5, "fake": 4, "total": 9}
    assert c["val"] == {"real": 2, "fake": 3, "total": 5}
    assert c["test"] == {"real": 3, "fake": 3, "total": 6}
    assert c["total"]["total"] == r["n_files"] == 20
    assert "by_source" not in c  # no MANIFEST


def test_finds_unreadable_files(planted):
    _, r = planted
    bad = {u["path"]: u["error"] for u in r["unreadable"]}
    assert set(bad) == {"val/fake/truncated.jpg", "test/real/notes.jpg"}
    assert "truncated" in bad["val/fake/truncated.jpg"]
    assert "not an image" in bad["test/real/notes.jpg"]


def test_finds_the_exact_duplicate(planted):
    _, r = planted
    ex = r["exact_duplicates"]
    assert ex["groups"] == 1 and ex["pairs"] == 1 and ex["across_splits"] == 0
    assert sorted(ex["group_items"][0]) == ["train/real/real_0.jpg", "train/real/real_0_copy.jpg"]
    assert ex["within_split"] == {"train": 1}


def test_finds_the_cross_split_near_duplicate(planted):
    _, r = planted
    near = r["near_duplicates"]
    assert near["pairs"] == 1, near["items"]  # and nothing else: distinct pictures stay apart
    item = near["items"][0]
    assert {item["a"], item["b"]} == {"train/real/real_1.jpg", "test/fake/leak.jpg"}
    assert item["splits"] == "train-test" and item["distance"] <= audit.NEAR_DISTANCE
    lk = r["leakage"]
    assert lk["pairs"] == 1 and lk["near"] == 1 and lk["exact"] == 0
    assert lk["by_splits"] == {"train-test": 1} and lk["cross_label"] == 1


def test_flags_the_compression_shortcut(planted):
    _, r = planted
    q = r["jpeg_quality"]
    assert q["real"]["median"] == 95 and q["fake"]["median"] == 60
    assert q["real"]["n"] == 9 and q["fake"]["n"] == 10  # the text file has no tables
    kinds = {s["kind"] for s in r["shortcuts"]}
    assert kinds == {"jpeg_quality"}
    assert r["formats"]["real"] == {"JPEG": 9, "unreadable": 1}
    assert r["sizes"]["fake"]["common"] == [["64x64", 10]] or r["sizes"]["fake"]["common"] == [("64x64", 10)]


def test_clean_dataset_has_no_findings(tmp_path):
    r = audit.audit(make_root(tmp_path, 90, 90, plant=False), progress=False)
    assert r["shortcuts"] == [] and r["unreadable"] == []
    assert r["exact_duplicates"]["pairs"] == 0 and r["near_duplicates"]["pairs"] == 0
    assert r["leakage"]["pairs"] == 0


def test_format_and_size_shortcuts(tmp_path):
    for i in range(4):
        write(tmp_path / "real" / f"r{i}.jpg", images.encode_jpeg(smooth_image(i, 64), 90))
        write(tmp_path / "fake" / f"f{i}.png", images.encode_png(smooth_image(10 + i, 128)))
    r = audit.audit(tmp_path, progress=False)
    assert {s["kind"] for s in r["shortcuts"]} == {"format", "size"}
    assert r["counts"]["all"] == {"real": 4, "fake": 4, "total": 8}
    assert r["jpeg_quality"]["fake"]["n"] == 0


def test_manifest_sources_and_per_source_shortcut(tmp_path):
    root = make_root(tmp_path / "data", 90, 90, plant=False)
    # a second source whose fakes alone are compressed harder
    lines = ["path,label,source"]
    for p in sorted(root.rglob("*.jpg")):
        rel = p.relative_to(root).as_posix()
        lines.append(f"{rel},{p.parent.name},a")
    seed = 500
    for split in ("train", "test"):
        for label, q in (("real", 95), ("fake", 50)):
            for i in range(3):
                rel = f"{split}/{label}/b_{i}.jpg"
                write(root / rel, images.encode_jpeg(smooth_image(seed), q))
                seed += 1
                lines.append(f"{rel},{label},b")
    (root / "MANIFEST.csv").write_text("\n".join(lines) + "\n")
    r = audit.audit(root, progress=False)
    assert r["counts"]["by_source"]["b"]["train"] == {"real": 3, "fake": 3}
    assert r["counts"]["by_source"]["a"]["val"] == {"real": 2, "fake": 2}
    assert any(s["kind"] == "jpeg_quality" and s["group"] == "b" for s in r["shortcuts"])
    assert not any(s["group"] == "a" for s in r["shortcuts"])


def test_cli_json_and_text(planted, capsys):
    root, _ = planted
    assert main(["audit", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    for key in ("counts", "sizes", "formats", "jpeg_quality", "shortcuts", "unreadable",
                "exact_duplicates", "near_duplicates", "leakage"):
        assert key in out
    assert out["leakage"]["pairs"] == 1
    assert main(["audit", str(root)]) == 0
    text = capsys.readouterr().out
    assert "Leakage across splits: 1 pairs" in text and "median JPEG quality real 95 vs fake 60" in text


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not present")
def test_shared_data_subset_reads_cleanly():
    """Only one small folder of the shared data (a full audit takes ~20 s)."""
    r = audit.audit(SHARED / "val", progress=False)
    assert r["unreadable"] == [] and r["n_files"] > 0 and {"val", "total"} <= set(r["counts"])
    assert r["formats"]["real"] == {"JPEG": r["counts"]["val"]["real"]}
    assert r["exact_duplicates"]["pairs"] == 0


def test_tables_for_the_dashboard(planted):
    root, r = planted
    t = audit.tables(r)
    counts = t["counts"].set_index("split")
    assert counts.loc["train", "real"] == 5 and counts.loc["total", "total"] == r["n_files"]
    files = t["files"].set_index("class")
    assert files.loc["real", "JPEG quality median"] == 95 and files.loc["fake", "JPEG quality median"] == 60
    hist = t["quality_histogram"]
    assert hist.groupby("class")["files"].sum().to_dict() == {
        c: r["jpeg_quality"][c]["n"] for c in ("real", "fake")}
    assert set(t["unreadable"]["path"]) == {"val/fake/truncated.jpg", "test/real/notes.jpg"}
    pairs = t["pairs"]
    assert (pairs["kind"] == "exact").sum() == 1 and not pairs.loc[pairs["kind"] == "exact", "leak"].any()
    leak = pairs[pairs["leak"]]
    assert len(leak) == 1 and {leak.iloc[0]["a"], leak.iloc[0]["b"]} == {"train/real/real_1.jpg", "test/fake/leak.jpg"}
    # the same tables from the JSON the CLI writes (keys become strings, tuples lists)
    again = audit.tables(json.loads(json.dumps(r)))
    assert again["quality_histogram"].equals(hist) and again["pairs"].equals(pairs)


def test_audit_reports_progress_to_a_callable(tmp_path):
    root = make_root(tmp_path / "d", plant=False)
    seen = []
    r = audit.audit(root, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, r["n_files"]) and seen[-1] == (r["n_files"], r["n_files"])


def test_training_page_audits_a_folder(tmp_path, monkeypatch):
    """AppTest: the Data audit tab audits a typed folder and shows leakage and the shortcut."""
    root = make_root(tmp_path / "planted_app")
    monkeypatch.setenv("DEEPFAKE_LAB_ROOTS", str(tmp_path))  # server folders are off without data roots
    at = open_page("app/pages/training.py", monkeypatch)
    at.text_input(key="aud_folder").set_value(str(root)).run()
    at.button(key="aud_run").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Leaks across splits"] == "1" and metrics["Unreadable"] == "2"
    assert any("repeat across splits" in e.value for e in at.error)
    assert any("Shortcut" in e.value and "quality" in e.value.lower() for e in at.error)
    counts = next(d.value for d in at.dataframe if "split" in d.value and "total" in d.value)
    assert counts.set_index("split").loc["train", "real"] == 5
