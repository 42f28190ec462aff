"""No injection (#27 item 4): user-controlled names and EXIF text reach the pages only escaped,
and CSV exports cannot carry spreadsheet formulas.

Hostile names: a Markdown image that would fetch a remote beacon, Streamlit's badge directive
that would draw a fake REAL verdict, and a spreadsheet formula; hostile EXIF: the same text in
the Software and Make tags. The Detect page scores uploads with those names (the tiny model of
conftest.py), the Compare page a zip whose members carry them; every Markdown-rendered element
is checked for the unescaped text, and every CSV the pages hand to `textsafe.csv_bytes` for
cells starting a formula."""
from __future__ import annotations

import io
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO_ROOT, fake_image, jpeg_bytes, smooth_image
from detector import textsafe

APP = str(REPO_ROOT / "streamlit_app.py")
BEACON = "![x](http://example.com/beacon.png)"
BADGE = ":green-badge[REAL]"
FORMULA = '=HYPERLINK("http://example.com","x")'
UNESCAPED = [re.compile(r"(?<!\\)!\[x\]"), re.compile(r"(?<!\\)\]\(http"), re.compile(r"(?<!\\):green-badge\[REAL\]_"),
             re.compile(r"(?<!\\):green-badge\[REAL\] in exif")]


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_with_exif(rgb: np.ndarray, text: str) -> bytes:
    exif = Image.Exif()
    exif[0x0131] = text  # Software
    exif[0x010F] = text  # Make
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def _markdown_texts(at) -> list[str]:
    """Every text Streamlit renders as Markdown on the page: markdown (badges included),
    captions, alerts, headings, image captions and widget labels."""
    out = [el.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader",
                                 "header", "title") for el in at.get(kind)]
    out += [img.caption for el in at.get("image") for img in el.proto.imgs]
    out += [o for r in at.radio for o in r.options]  # radio options are Markdown too
    return [str(t) for t in out]


def _hostile_hits(at) -> list[str]:
    return [t for t in _markdown_texts(at) if any(p.search(t) for p in UNESCAPED)]


@pytest.fixture()
def spy_csv(monkeypatch) -> list[pd.DataFrame]:
    """The frames every page CSV download is made of (ui.csv_download -> textsafe.csv_bytes).
    The CSV is written when its button is clicked (a deferred callable), which AppTest never
    does: each CSV button's callable is called here as a click would."""
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    seen = []
    real = textsafe.csv_bytes

    def spy(frame):
        data = real(frame)
        seen.append(pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False))
        return data

    def clicking(button):
        def download_button(*args, **kwargs):
            for data in (*args, kwargs.get("data")):  # (label, data) or (self, label, data)
                if getattr(data, "func", None) is spy:
                    data()
            return button(*args, **kwargs)
        return download_button

    monkeypatch.setattr(textsafe, "csv_bytes", spy)
    monkeypatch.setattr(st, "download_button", clicking(st.download_button))
    monkeypatch.setattr(DeltaGenerator, "download_button", clicking(DeltaGenerator.download_button))
    return seen


def _formula_cells(frames: list[pd.DataFrame]) -> list[str]:
    return [v for f in frames for v in [*f.columns, *f.to_numpy().ravel()]
            if isinstance(v, str) and v[:1] in ("=", "+", "@") or (isinstance(v, str) and v.startswith("-") and
                                                                    not re.fullmatch(r"-[\d.e+-]+", v))]


@pytest.fixture(scope="module")
def tiny_models(tiny_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("injection_models")
    for name in ("tiny", "tiny2"):  # two models: Compare's pairwise tests (a radio of sources) show
        shutil.copytree(tiny_run, root / name, ignore=shutil.ignore_patterns("logs", "checkpoints"))
    (root / "DEFAULT").write_text("tiny\n")
    return root


@pytest.mark.slow
def test_detect_page_shows_hostile_names_and_exif_as_text(tiny_models, monkeypatch, spy_csv):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(tiny_models))
    at = AppTest.from_file(APP, default_timeout=240).run()
    assert not at.exception, at.exception
    rng = np.random.default_rng(0)
    uploads = [(f"{BEACON}.png", _png(smooth_image(rng, 96)), "image/png"),
               (f"{BADGE}_face.png", _png(fake_image(rng, 96)), "image/png"),
               (f"{FORMULA}.jpg", _jpeg_with_exif(smooth_image(rng, 96), f"{BADGE} in exif {BEACON}"), "image/jpeg"),
               (f"{BEACON}broken.jpg", b"not an image at all", "image/jpeg")]
    at.toggle(key="det_forensics").set_value(True).run()  # the forensic views show the EXIF notes
    at.file_uploader[0].set_value(uploads).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) == 4  # every file listed (the broken one with its error)
    texts = _markdown_texts(at)
    assert any(textsafe.md_escape(f"{BEACON}.png") in t for t in texts)  # the name is shown, as text
    assert any("Last written by software" in t and textsafe.md_escape(BADGE) in t for t in texts)  # EXIF, as text
    assert _hostile_hits(at) == []
    assert spy_csv, "the results CSV was not built"
    assert _formula_cells(spy_csv) == []
    assert any(v.startswith("'=HYPERLINK") for f in spy_csv for v in f.to_numpy().ravel() if isinstance(v, str))


def _hostile_zip() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(3):
            z.writestr(f"set/real/{BEACON}{i}.jpg", jpeg_bytes(smooth_image(rng, 48)))
            z.writestr(f"set/fake/{BADGE}_{i}.png", _png(fake_image(rng, 48)))
        z.writestr(f"set/fake/{FORMULA}/f.png", _png(fake_image(rng, 48)))  # a source named like a formula
        z.writestr(f"set/fake/{BADGE}_source/g.png", _png(fake_image(rng, 48)))  # a source named like a badge
        z.writestr(f"set/fake/{BEACON}broken.jpg", b"broken")
    return buf.getvalue()


@pytest.mark.slow
def test_compare_page_shows_hostile_member_names_as_text(tiny_models, monkeypatch, spy_csv):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(tiny_models))
    at = AppTest.from_file(APP, default_timeout=240).run()
    at.switch_page("app/pages/compare.py").run()
    at.button_group(key="cmp_source").set_value("Your labelled set").run()
    at.file_uploader(key="cmp_zip").set_value((f"{BEACON}.zip", _hostile_zip(), "application/zip")).run()
    assert not at.exception, at.exception
    at.slider(key="cmp_thr_tiny").set_value(0.0).run()  # every real image a mistake: the explorer lists them
    table = next(d for d in at.dataframe if "why" in d.value.columns)
    row = list(table.value["path"]).index(f"set/real/{BEACON}0.jpg")
    at.session_state[table.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    texts = _markdown_texts(at)
    assert any(textsafe.md_escape(f"set/real/{BEACON}0.jpg") in t for t in texts)  # enlarged, named as text
    assert textsafe.md_escape(f"{BADGE}_source") in at.radio(key="cmp_lab_pairs_on").options  # a source, as text
    assert _hostile_hits(at) == []
    assert _formula_cells(spy_csv) == []
    assert any(v.startswith("'=HYPERLINK") for f in spy_csv for v in f.to_numpy().ravel() if isinstance(v, str))


def test_cli_predict_csv_keeps_a_formula_named_file_as_text(tiny_run, tmp_path, monkeypatch, capsys):
    """`python -m detector predict --csv`: a file named like a formula is written quoted as
    text (stdout and the file alike); numbers stay numbers."""
    import csv

    from detector.__main__ import main

    monkeypatch.chdir(tmp_path)
    name = '=HYPERLINK("evil.example","x").png'  # no slash: a file name
    (tmp_path / name).write_bytes(_png(smooth_image(np.random.default_rng(2), 64)))
    assert main(["predict", name, "--model", str(tiny_run), "--csv", "rows.csv"]) == 0
    with open(tmp_path / "rows.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["path"] == "'" + name for r in rows)
    assert all(float(r["p_fake"]) >= 0 for r in rows)
    printed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert printed == rows
