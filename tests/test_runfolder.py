"""The run-folder contract (`detector.runfolder`): one owner for the models/ file names and the
card's schema version, used by training to write and by store to read."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detector import runfolder, store

ROOT = Path(__file__).resolve().parent.parent


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every plain string constant that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    joined = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and id(node) not in joined]


def test_file_names_are_written_once():
    """No module but runfolder spells a run-folder file name as a literal: a renamed file or a
    new reader changes one place (docstrings and messages inside f-strings may still name them)."""
    offenders = [f"{p.relative_to(ROOT)}:{line}: {value!r}"
                 for p in sorted([*ROOT.glob("detector/*.py"), *ROOT.glob("app/**/*.py"), ROOT / "train.py"])
                 if p.name != "runfolder.py"
                 for line, value in _string_literals(p) if value in runfolder.FILES]
    assert not offenders, "use the detector.runfolder constants:\n" + "\n".join(offenders)


def test_file_names_are_distinct_and_store_uses_them():
    """Two files cannot share a name, and store's names (used by the pages) are runfolder's."""
    assert len(set(runfolder.FILES)) == len(runfolder.FILES)
    assert (store.CARD, store.MODEL_FILE, store.PREDICTIONS, store.HISTORY, store.FOLDS) == (
        runfolder.CARD, runfolder.MODEL_FILE, runfolder.PREDICTIONS, runfolder.HISTORY, runfolder.FOLDS)


def test_a_card_is_stamped_with_the_schema_and_reads_back(tmp_path):
    """A written card carries the schema version, holds JSON-safe values and reads back as written."""
    written = runfolder.write_card(tmp_path, {"name": "x", "threshold": np.float32(0.25), "metrics": {}})
    stored = json.loads((tmp_path / runfolder.CARD).read_text())
    assert stored == written and stored["schema_version"] == runfolder.CARD_SCHEMA_VERSION
    assert stored["threshold"] == pytest.approx(0.25)
    assert runfolder.read_card(tmp_path) == stored


def test_a_card_without_a_version_is_version_1_and_keeps_its_fields(tmp_path):
    """Cards written before the field existed (the shipped ones) still read, and an update keeps them."""
    (tmp_path / runfolder.CARD).write_text(json.dumps({"name": "old", "threshold": 0.5}))
    assert runfolder.read_card(tmp_path) == {"name": "old", "threshold": 0.5}
    rewritten = runfolder.write_card(tmp_path, {**runfolder.read_card(tmp_path), "bench": {"ms": 1}})
    assert rewritten["schema_version"] == 1 and rewritten["name"] == "old"


def test_a_card_from_a_newer_schema_is_refused(tmp_path):
    """An older reader must not misread a card whose fields changed meaning."""
    (tmp_path / runfolder.CARD).write_text(json.dumps({"schema_version": runfolder.CARD_SCHEMA_VERSION + 1}))
    with pytest.raises(runfolder.CardSchemaError, match="update Deepfake Lab"):
        runfolder.read_card(tmp_path)


def test_store_reads_and_updates_cards_through_the_contract(tmp_path):
    """store.read_card adds name/dir on top of the stored card; update_card merges and stamps it."""
    folder = tmp_path / "run"
    folder.mkdir()
    runfolder.write_card(folder, {"name": "run", "input_size": 32})
    (folder / runfolder.MODEL_FILE).write_bytes(b"")
    assert runfolder.is_run_folder(folder)
    card = store.read_card(folder)
    assert card["name"] == "run" and card["dir"] == str(folder.resolve())
    stored = store.update_card(folder, bench={"img_s": 3})
    assert stored["bench"] == {"img_s": 3} and "dir" not in stored
    assert store.read_card(folder)["schema_version"] == runfolder.CARD_SCHEMA_VERSION


def test_predictions_use_label_names_and_optional_columns(tmp_path):
    """predictions.csv keeps the contract's columns in order (unknown ones dropped, fold kept) and
    writes labels as real/fake; a missing table reads as None."""
    preds = pd.DataFrame({"split": ["val", "test"], "path": ["a.jpg", "b.jpg"], "source": ["s", "s"],
                          "label": [0, 1], "p_fake": [0.1, 0.9], "p_raw": [0.2, 0.8], "extra": [1, 2],
                          "fold": [np.nan, 2.0]})
    runfolder.write_predictions(preds, tmp_path)
    back = runfolder.read_csv(tmp_path, runfolder.PREDICTIONS)
    assert list(back.columns) == [*runfolder.PREDICTION_COLUMNS, "fold"]
    assert back["label"].tolist() == ["real", "fake"]
    assert runfolder.read_csv(tmp_path, runfolder.HISTORY) is None
