"""Every folder box of the dashboard is off without data roots and confined with them (#27).

Boxes: Detect's server folder (det_folder), Compare's labelled folder (cmp_folder), the
Training page's audit (aud_folder), learning-curve (lc_folder) and runs (trn_folder) boxes.
Without DEEPFAKE_LAB_ROOTS (or the secrets' list) a box is not offered; with it, a folder
outside the roots, a `..` walk out, a symlink that leads out and a missing folder all get
the same message, and a folder inside is used."""
from __future__ import annotations

import pytest

from conftest import REPO_ROOT, open_page
from detector import roots

BOXES = [("app/pages/detect.py", "det_folder", None), ("app/pages/compare.py", "cmp_folder", "Your labelled set"),
         ("app/pages/training.py", "aud_folder", None), ("app/pages/training.py", "lc_folder", None),
         ("app/pages/training.py", "trn_folder", None)]


def _open(page: str, source: str | None, monkeypatch, models_root):
    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))
    at = open_page(page, monkeypatch)
    if source:
        at.button_group(key="cmp_source").set_value(source).run()
        assert not at.exception, at.exception
    return at


def _has_box(at, key: str) -> bool:
    return any(t.key == key for t in at.text_input)


@pytest.mark.parametrize("page, key, source", BOXES)
def test_folder_box_is_off_without_data_roots(page, key, source, models_root, monkeypatch):
    monkeypatch.delenv(roots.ENV, raising=False)
    at = _open(page, source, monkeypatch, models_root)
    assert not _has_box(at, key)
    assert any(roots.OFF in c.value for c in at.caption)


@pytest.mark.slow
@pytest.mark.parametrize("page, key, source", BOXES)
def test_folder_box_is_confined_to_the_data_roots(page, key, source, models_root, monkeypatch, tmp_path):
    allowed = tmp_path / "root"
    (allowed / "inside" / "real").mkdir(parents=True)
    secret = tmp_path / "secret"
    (secret / "real").mkdir(parents=True)
    (allowed / "out").symlink_to(secret, target_is_directory=True)
    monkeypatch.setenv(roots.ENV, str(allowed))
    at = _open(page, source, monkeypatch, models_root)
    assert _has_box(at, key)
    for hostile in (str(secret), str(allowed / ".." / "secret"), "../secret", str(allowed / "out"), "/etc",
                    str(allowed / "missing"), "~"):
        at.text_input(key=key).set_value(hostile).run()
        assert not at.exception, (hostile, at.exception)
        assert [e.value for e in at.error if e.value == roots.REFUSED] == [roots.REFUSED], hostile
        assert not any(str(secret) in str(getattr(el, "value", "")) for el in [*at.warning, *at.info, *at.caption])
    at.text_input(key=key).set_value(str(allowed / "inside")).run()
    assert not at.exception, at.exception
    assert not any(e.value == roots.REFUSED for e in at.error)


def test_secrets_name_data_roots_too(models_root, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv(roots.ENV, raising=False)
    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))
    monkeypatch.chdir(REPO_ROOT)
    at = AppTest.from_file(str(REPO_ROOT / "app" / "pages" / "training.py"), default_timeout=120)
    at.secrets["deepfake_lab"] = {"roots": [str(tmp_path)]}
    at.run()
    assert not at.exception, at.exception
    assert _has_box(at, "aud_folder")
    at.text_input(key="aud_folder").set_value(str(tmp_path)).run()
    assert not any(e.value == roots.REFUSED for e in at.error)
    at.text_input(key="aud_folder").set_value(str(tmp_path.parent)).run()
    assert any(e.value == roots.REFUSED for e in at.error)
