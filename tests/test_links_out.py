"""Links out of a confined folder are not followed (#27 items 1, 6): the audit and the learning
curve read a folder through `data.scan(confine=True)`, as Compare's labelled folder and
Detect's server folder do (`roots.inside`). A file link, a `real/` folder link and a
MANIFEST.csv link that lead outside the typed folder are listed, never read; the command line
(`confine=False`) still follows them (its user has a shell)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import jpeg_bytes, smooth_image
from detector import audit, data, learning_curve, roots


def _jpeg(seed: int) -> bytes:
    return jpeg_bytes(smooth_image(np.random.default_rng(seed), 48))


@pytest.fixture()
def linked(tmp_path):
    """set/ (the typed folder) holds two real and two fake images of its own, a file link
    to an outside copy of one of its own images (followed, it would be an exact duplicate),
    and fake/elsewhere -> an outside folder holding another copy; the outside folder also
    holds a secret image."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(_jpeg(0))
    (outside / "copy.jpg").write_bytes(_jpeg(1))
    (outside / "dir" / "copy2.jpg").write_bytes(_jpeg(2))
    root = tmp_path / "set"
    for label, seeds in (("real", (1, 3)), ("fake", (2, 4))):
        (root / label).mkdir(parents=True)
        for s in seeds:
            (root / label / f"{s}.jpg").write_bytes(_jpeg(s))
    (root / "real" / "link.jpg").symlink_to(outside / "secret.jpg")
    (root / "real" / "dup.jpg").symlink_to(outside / "copy.jpg")
    return root, outside


def test_scan_confined_lists_links_out_and_reads_only_files_inside(linked):
    root, _ = linked
    frame = data.scan(root, confine=True)
    assert sorted(frame["rel"]) == ["fake/2.jpg", "fake/4.jpg", "real/1.jpg", "real/3.jpg"]
    assert sorted(r for r, _, _ in frame.attrs["links_out"]) == ["real/dup.jpg", "real/link.jpg"]
    assert len(data.scan(root)) == 6  # the default (training, the CLI) follows links


def test_scan_confined_does_not_follow_a_class_or_split_folder_link(linked, tmp_path):
    root, outside = linked
    split = tmp_path / "split"
    (split / "train").mkdir(parents=True)
    (split / "train" / "real").symlink_to(root / "real")  # a class folder that leads out of split/
    (split / "train" / "fake").mkdir()
    (split / "train" / "fake" / "own.jpg").write_bytes(_jpeg(5))
    (split / "val").symlink_to(outside)  # a whole split folder that leads out
    frame = data.scan(split, confine=True)
    assert list(frame["rel"]) == ["train/fake/own.jpg"]
    assert {r for r, _, _ in frame.attrs["links_out"]} >= {"train/real/1.jpg", "train/real/link.jpg"}
    only = tmp_path / "only_links"
    (only / "real").mkdir(parents=True)
    (only / "real" / "x.jpg").symlink_to(outside / "secret.jpg")
    with pytest.raises(ValueError, match=r"no images found .*\(1 link to files outside this folder, not read\)"):
        data.scan(only, confine=True)


def test_audit_does_not_read_a_link_out_and_says_why(linked):
    """Followed, the link to an outside copy of real/1.jpg would be an exact duplicate pair
    and the secret's size and format would be reported; confined, neither is read."""
    root, _ = linked
    report = audit.audit(root, progress=False)
    links = {u["path"]: u["error"] for u in report["unreadable"]}
    assert links == {"real/dup.jpg": roots.LINK_OUT, "real/link.jpg": roots.LINK_OUT}
    assert report["exact_duplicates"]["pairs"] == 0
    followed = audit.audit(root, progress=False, confine=False)  # what the CLI does
    assert followed["exact_duplicates"]["pairs"] == 1 and followed["unreadable"] == []


def test_cli_audit_follows_links(linked, capsys):
    from detector.__main__ import main

    root, _ = linked
    assert main(["audit", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unreadable"] == [] and report["exact_duplicates"]["pairs"] == 1


def test_learning_curve_does_not_follow_links_out(tmp_path):
    """A split root whose val/ leads out and whose MANIFEST.csv is a link out: confined,
    the manifest names no source and val holds nothing, so the run is refused before any
    network is built; followed (the CLI), the same source is found with train and val."""
    outside = tmp_path / "outside"
    root = tmp_path / "split"
    rows = ["path,source"]
    for split, base in (("train", root / "train"), ("val", outside / "val")):
        for label in ("real", "fake"):
            (base / label).mkdir(parents=True)
            for i in range(2):
                (base / label / f"{i}.jpg").write_bytes(_jpeg(i + (label == "fake") * 10))
                rows.append(f"{split}/{label}/{i}.jpg,alpha")
    (root / "val").symlink_to(outside / "val")
    (outside / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    (root / "MANIFEST.csv").symlink_to(outside / "MANIFEST.csv")
    assert learning_curve.sources(str(root), confine=False) == ["alpha"]
    assert learning_curve.sources(str(root)) == []
    (root / "MANIFEST.csv").unlink()
    (root / "MANIFEST.csv").write_text("\n".join(rows) + "\n")  # a manifest of its own: val still leads out
    assert learning_curve.sources(str(root)) == ["alpha"]
    with pytest.raises(ValueError, match="no train and val images of source 'alpha'"):
        learning_curve.run(str(root), "alpha", max_files=100)
    frame = data.scan(root)
    assert set(frame.loc[frame["source"] == "alpha", "split"]) == {"train", "val"}  # what the CLI would read


def test_runs_box_leaves_out_a_run_that_links_out(tmp_path):
    """The Training page's runs box (`ui.run_folders`): a run sub-folder that is a link out,
    or whose card, history or predictions file is one, is not listed (its files are never read)."""
    from app import ui

    outside = tmp_path / "outside" / "run"
    outside.mkdir(parents=True)
    for name in ("card.json", "history.csv", "predictions.csv"):
        (outside / name).write_text("{}" if name.endswith("json") else "epoch\n1\n")
    runs = tmp_path / "runs"
    (runs / "good").mkdir(parents=True)
    (runs / "good" / "card.json").write_text("{}")
    (runs / "whole").symlink_to(outside, target_is_directory=True)
    (runs / "card_link").mkdir()
    (runs / "card_link" / "card.json").symlink_to(outside / "card.json")
    (runs / "preds_link").mkdir()
    (runs / "preds_link" / "history.csv").write_text("epoch\n1\n")
    (runs / "preds_link" / "predictions.csv").symlink_to(outside / "predictions.csv")
    assert ui.run_folders(runs) == [runs / "good"]
    assert ui.run_folders(runs / "card_link") == []  # a typed run folder whose card leads out
    assert ui.run_folders(runs / "good") == [runs / "good"]
