"""Compare and Training pages read as a person reads them (#24): no raw None / NaN / True /
False in any table, every chart downloadable as PNG from its modebar, and `ui.readable` (the
helper that does it) on its own."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import streamlit as st

RAW = {"None", "nan", "NaN", "True", "False", "<NA>", "NaT"}


def _raw_cells(at) -> list[tuple[str, object]]:
    out = []
    for d in at.dataframe:
        for col in d.value.columns:
            for v in d.value[col]:
                if v is None or isinstance(v, (bool, np.bool_)) or (isinstance(v, float) and v != v) or str(v) in RAW:
                    out.append((col, v))
                    break
    return out


def _no_png(at) -> list[str]:
    bad = []
    for el in at.get("plotly_chart"):
        config = json.loads(el.proto.config or "{}")
        if (config.get("toImageButtonOptions") or {}).get("format") != "png" or config.get("displayModeBar") is False:
            bad.append(json.loads(el.proto.spec)["layout"].get("title", {}).get("text", "?"))
    return bad


@pytest.mark.parametrize("page", ["app/pages/compare.py", "app/pages/training.py"])
def test_pages_show_no_raw_values_and_every_chart_saves_a_png(page, models_root, monkeypatch):
    from conftest import open_page

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))
    at = open_page(page, monkeypatch)
    if page.endswith("compare.py"):  # every model, the weak ones too (their cards miss the most)
        at.multiselect(key="cmp_models").set_value(at.multiselect(key="cmp_models").options).run()
        assert not at.exception, at.exception
    assert at.dataframe and at.get("plotly_chart")
    assert _raw_cells(at) == []
    assert _no_png(at) == []


def test_readable_says_n_a_and_yes_no_and_keeps_clean_columns_numeric():
    from app import ui

    df = pd.DataFrame({"ms": [1.25, None], "kept": [True, False], "n": [3, 4], "share": [0.5, np.nan],
                       "name": ["a", None]})
    out, config = ui.readable(df, {"ms": st.column_config.NumberColumn("ms per image", format="%.2f", help="why"),
                                   "share": st.column_config.NumberColumn("share", format="percent")})
    assert list(out["ms"]) == ["1.25", "n/a"] and config["ms"]["help"] == "why"
    assert config["ms"]["label"] == "ms per image" and config["ms"]["type_config"]["type"] == "text"
    assert list(out["kept"]) == ["yes", "no"]
    assert list(out["share"]) == ["50.0%", "n/a"]
    assert list(out["name"]) == ["a", "n/a"]
    assert out["n"].dtype.kind == "i" and "n" not in config  # nothing missing: still numbers
    assert df["ms"].isna().sum() == 1  # the caller's frame is untouched


def test_run_names_reach_plotly_labels_as_text():
    from app import ui

    assert ui.plot_text('<a href="http://example.com">run</a>') == '&lt;a href="http://example.com"&gt;run&lt;/a&gt;'
    assert ui.plot_text("tiny · openforensics") == "tiny · openforensics"
