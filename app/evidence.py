"""Detect page helpers for the evidence beyond the model (#25): the stability toggle, scoring
with provenance attached, the evidence panel per image, the custody columns of the CSV and
the PDF download. Thin UI: the rules and the reading live in `detector.evidence`,
`detector.provenance`, `detector.custody`, `detector.stability` and `detector.pdf_report`.
"""
from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from app import ui
from detector import custody, evidence, provenance, report

# Measured by `python -m detector bench` (stability_ms_p50: 290 ms; photo without it: 169 ms) on a 2-core CPU,
# default model efficientnet_lite0_experts, one 1024x768 photo with one face; see docs/evidence.md.
STABILITY_MS_PER_FACE = 290
STABILITY_HELP = (
    "Re-score each face after a JPEG re-save at quality 70, a 0.5x down-and-up scale and a small crop shift; "
    "a verdict that crosses the threshold under any of them is shown as UNSTABLE with the scores. "
    f"Cost: about {STABILITY_MS_PER_FACE} ms more per face with the default model "
    "(three extra crops scored; measured by `python -m detector bench`, stability_ms_p50).")

COLUMNS = {
    "sha256": st.column_config.TextColumn("sha256", help=evidence.COLUMN_HELP["sha256"].capitalize()),
    "provenance": st.column_config.TextColumn("provenance", help=evidence.COLUMN_HELP["provenance"].capitalize()),
    "reconciled": st.column_config.TextColumn("reconciled", help=evidence.COLUMN_HELP["reconciled"].capitalize()),
    "reconciled_text": st.column_config.TextColumn("reconciled_text",
                                                   help=evidence.COLUMN_HELP["reconciled_text"].capitalize()),
    "unstable": st.column_config.CheckboxColumn("unstable", help=evidence.COLUMN_HELP["unstable"].capitalize()),
}


def stability_toggle() -> bool:
    """The sidebar toggle (off by default)."""
    return st.toggle("Stability check", value=False, key="det_stability", help=STABILITY_HELP)


@st.cache_data(show_spinner=False, max_entries=64)
def _stable_score(key: str, model_paths: tuple[str, ...], mtimes: tuple[float, ...], gradcam: bool, _data: bytes):
    from detector import images, report

    rgb = images.decode_image(_data)  # raises images.ImageDecodeError (not cached)
    detectors = [ui._detector(p, m) for p, m in zip(model_paths, mtimes)]
    return report.score_image(rgb, detectors, gradcam=gradcam, digest=key, stable=True)


@st.cache_data(show_spinner=False, max_entries=256)
def _provenance(key: str, trust: str, _data: bytes):
    return provenance.read(_data)


def score(name: str, data: bytes, models: list[str], gradcam: bool, stable: bool):
    """ui.score plus the stability check when asked, with the file's SHA-256 and provenance
    attached (cached per file bytes, like the scores; nothing written to disk)."""
    if stable:
        paths, mtimes = ui._model_files(models)
        result = _stable_score(ui.digest(data), paths, mtimes, gradcam, data)
        result.name = name
    else:
        result = ui.score(name, data, models, gradcam)
    result.sha256 = custody.sha256(data)
    result.provenance = _provenance(result.sha256, provenance.trust_list_name(), data)
    return result


def hash_errors(results: list, entries: list) -> None:
    """Files that could not be analysed still get the SHA-256 of their bytes (when read)."""
    for r, e in zip(results, entries):
        if isinstance(r, report.ImageError) and getattr(e, "data", None) is not None and not r.sha256:
            r.sha256 = custody.sha256(e.data)


def block_for(models: list[str], threshold: float, band: float) -> dict:
    """The custody block (detector.custody.block) with the models under their shipped names."""
    b = custody.block([ui.model_dir(m) for m in models], threshold, band, trust_list=provenance.trust_list_name())
    for m, name in zip(b["models"], models):
        m["model"] = name
    return b


def with_custody(table: pd.DataFrame, models: list[str], threshold: float, band: float) -> pd.DataFrame:
    """The CSV export: the results table plus the custody columns (constant per export)."""
    out = table.copy()
    for k, v in custody.columns(block_for(models, threshold, band)).items():
        out[k] = v
    return out


def _pdf(results: list, models: list[str], threshold: float, band: float, alpha: float, labels: list) -> bytes:
    """The PDF report's bytes, made when the button is clicked."""
    from detector import pdf_report

    return pdf_report.pdf_report(results, threshold, band, custody=block_for(models, threshold, band),
                                 heatmap_alpha=alpha, labels=labels)


def pdf_button(results: list, models: list[str], threshold: float, band: float, alpha: float, labels: list) -> None:
    # a partial over the report's inputs only (never a closure): Streamlit keeps a deferred
    # download's callable after the session ends, so it must not hold the uploads (#27)
    st.download_button(
        "PDF report",
        functools.partial(_pdf, results, list(models), threshold, band, alpha, labels),
        file_name="deepfake_lab_report.pdf", mime="application/pdf", key="det_pdf", on_click="ignore",
        icon=":material/picture_as_pdf:",
        help="A summary page (counts, settings, chain of custody), then one section per image: boxes, faces, "
             "heatmaps and its evidence panel.")


def headline(r, threshold: float, band: float) -> None:
    """Right under an image's verdict: a warning when its provenance overrides or contradicts
    that verdict (`detector.evidence.headline`), nothing otherwise."""
    line = evidence.headline(r, threshold, band)
    if line is not None:
        level, text = line
        (st.warning if level == "warning" else st.info)(text, icon=":material/gpp_maybe:")


def panel(r, threshold: float, band: float) -> None:
    """The evidence panel of one image: the model verdict, each provenance finding, the
    stability of each face, and the reconciled line. The lines come escaped from
    `detector.evidence.panel_markdown` (metadata text never becomes a link, image or badge)."""
    with st.expander("Evidence: model, Content Credentials, metadata", expanded=True):
        for kind, text in evidence.panel_markdown(r, threshold, band):
            (st.caption if kind == "caption" else st.markdown)(text)
