"""Security settings (#27): detector/roots.py (server folders are off without data roots, and
confined to them), the shipped Streamlit config, and the model-card check of detector/store.py.

Every refusal must read the same (no existence oracle): each case below checks the exact
message. Folders and symlinks are made in pytest's tmp folders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from detector import roots


@pytest.fixture()
def tree(tmp_path) -> dict[str, Path]:
    data = tmp_path / "data"
    (data / "set" / "real").mkdir(parents=True)
    (data / "file.txt").write_text("x")
    outside = tmp_path / "secret"
    (outside / "inner").mkdir(parents=True)
    (data / "escape").symlink_to(outside, target_is_directory=True)  # a link that leads out
    (data / "stays").symlink_to(data / "set", target_is_directory=True)  # a link that stays in
    return {"data": data, "outside": outside, "tmp": tmp_path}


def refused(text, allowed):
    with pytest.raises(roots.FolderRefused) as info:
        roots.confine(text, allowed)
    assert str(info.value) == roots.REFUSED
    return True


def test_no_roots_means_no_folders(tree):
    assert refused(tree["data"], [])
    assert roots.configured(env="") == []
    assert roots.configured(env=os.pathsep.join([str(tree["tmp"] / "missing"), ""])) == []  # missing ones do not count


def test_configured_reads_the_variable_and_the_secrets_list(tree, monkeypatch):
    monkeypatch.setenv(roots.ENV, f"{tree['data']}{os.pathsep}{tree['data']}/../data")
    assert roots.configured() == [tree["data"].resolve()]  # resolved, once
    assert roots.configured(extra=[str(tree["outside"])]) == [tree["data"].resolve(), tree["outside"].resolve()]
    monkeypatch.setenv("HOME", str(tree["tmp"]))
    assert roots.configured(env="~/data") == [tree["data"].resolve()]


def test_inside_a_root_is_allowed(tree):
    allowed = [tree["data"]]
    assert roots.confine(str(tree["data"]), allowed) == tree["data"].resolve()
    assert roots.confine(str(tree["data"] / "set"), allowed) == (tree["data"] / "set").resolve()
    assert roots.confine("set/real", allowed) == (tree["data"] / "set" / "real").resolve()  # relative: first root
    assert roots.confine(str(tree["data"] / "stays"), allowed) == (tree["data"] / "set").resolve()
    assert roots.confine(f"  {tree['data']}/set/../set  ", allowed) == (tree["data"] / "set").resolve()


def test_traversal_symlink_escape_home_and_absolute_paths_are_refused(tree, monkeypatch):
    allowed = [tree["data"]]
    assert refused(str(tree["data"] / ".." / "secret"), allowed)  # `..` out of the root
    assert refused("../secret", allowed)  # relative traversal
    assert refused("set/../../secret/inner", allowed)
    assert refused(str(tree["data"] / "escape"), allowed)  # a symlink inside that leads out
    assert refused(str(tree["data"] / "escape" / "inner"), allowed)
    assert refused("/", allowed)
    assert refused("/etc", allowed)  # an existing absolute folder outside
    assert refused(str(tree["outside"]), allowed)
    monkeypatch.setenv("HOME", str(tree["outside"]))
    assert refused("~", allowed)  # ~ expanded, then outside
    assert refused("~/inner", allowed)
    # inside the root but not a folder, or missing: the very same message (no existence oracle)
    assert refused(str(tree["data"] / "file.txt"), allowed)
    assert refused(str(tree["data"] / "nope"), allowed)
    assert refused(str(tree["tmp"] / "nope"), allowed)
    assert refused("", allowed) and refused("bad\x00name", allowed)
    # a sibling whose name starts like the root is not inside it
    sibling = tree["tmp"] / "data2"
    sibling.mkdir()
    assert refused(str(sibling), allowed)


def test_inside_checks_files_below_a_root(tree):
    (tree["outside"] / "x.jpg").write_bytes(b"x")
    (tree["data"] / "set" / "real" / "link.jpg").symlink_to(tree["outside"] / "x.jpg")
    assert not roots.inside(tree["data"] / "set" / "real" / "link.jpg", [tree["data"]])
    assert roots.inside(tree["data"] / "file.txt", [tree["data"]])


def test_shipped_config_serves_this_machine_only_and_hides_error_details():
    import tomllib

    from conftest import REPO_ROOT

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] == "none"
    readme = (REPO_ROOT / "README.md").read_text()
    assert roots.ENV in readme and "[deepfake_lab]" in readme and "--server.address 0.0.0.0" in readme


# --- model cards are checked when a model folder is loaded (#27 item 5) ----------------------

@pytest.mark.parametrize("field, value, words", [
    ("threshold", 1.5, "a number from 0 to 1"), ("threshold", "0.5", "a number from 0 to 1"),
    ("threshold", True, "a number from 0 to 1"), ("temperature", 0, "a positive number"),
    ("temperature", float("nan"), "a positive number"), ("input_size", 12.5, "a whole number of pixels"),
    ("input_size", 100000, "a whole number of pixels"), ("params", -1, "a whole number"),
    ("kfold", 1, "empty or a whole number of folds"), ("name", 3, "text"), ("metrics", [1], "empty or a JSON object"),
    ("label_names", "real", "a list of names"), ("gradcam_layer", 5, "empty or a layer name")])
def test_a_card_field_of_the_wrong_type_or_range_is_refused_plainly(field, value, words):
    from detector import store

    good = {"threshold": 0.4, "temperature": 1.1, "bias": -0.1, "input_size": 256, "params": 100, "kfold": None,
            "name": "m", "metrics": {}, "label_names": ["real", "fake"], "gradcam_layer": None}
    assert store.validate_card(dict(good)) == good
    with pytest.raises(store.CardError) as info:
        store.validate_card({**good, field: value}, "models/m/card.json")
    assert str(info.value).startswith(f"models/m/card.json: field '{field}' must be {words}")


def test_a_model_with_a_bad_card_is_left_out_of_the_pages_with_the_reason(tiny_run, tmp_path, monkeypatch):
    import json
    import shutil

    from conftest import open_page
    from detector import store

    for name in ("good", "bad"):
        shutil.copytree(tiny_run, tmp_path / name, ignore=shutil.ignore_patterns("logs", "checkpoints"))
    card = json.loads((tmp_path / "bad" / "card.json").read_text())
    (tmp_path / "bad" / "card.json").write_text(json.dumps({**card, "threshold": "high"}))
    (tmp_path / "DEFAULT").write_text("good\n")
    with pytest.raises(store.CardError, match="field 'threshold' must be a number from 0 to 1"):
        store.read_card(tmp_path / "bad")
    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(tmp_path))
    at = open_page("app/pages/compare.py", monkeypatch)
    assert at.multiselect(key="cmp_models").value == ["good"] and len(at.multiselect(key="cmp_models").options) == 1
    assert any("bad" in e.value and "must be a number from 0 to 1" in e.value for e in at.error)


def test_a_run_folder_with_a_bad_card_is_reported_not_crashed_on(tiny_run, tmp_path, monkeypatch):
    import json
    import shutil

    from conftest import open_page

    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "broken", ignore=shutil.ignore_patterns("logs", "checkpoints"))
    card = json.loads((runs / "broken" / "card.json").read_text())
    (runs / "broken" / "card.json").write_text(json.dumps({**card, "input_size": "big"}))
    monkeypatch.setenv("DEEPFAKE_LAB_ROOTS", str(tmp_path))
    at = open_page("app/pages/training.py", monkeypatch)
    at.text_input(key="trn_folder").set_value(str(runs)).run()
    assert not at.exception, at.exception
    assert any("broken" in w.value and "input\\_size" in w.value and "whole number of pixels" in w.value
               for w in at.warning)
