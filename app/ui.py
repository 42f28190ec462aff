"""Shared UI helpers for the pages: cached loaders, the model picker, badges and the
charts two pages draw. Only glue between Streamlit and `detector` lives here.

Caching: models are `st.cache_resource` (one per process, shared
by every session, read-only); cards and CSV tables are `st.cache_data`, keyed by path AND
file modification time so a retrained model is picked up without a restart. The models
folder is looked up on every call (`models_root`), so `DEEPFAKE_LAB_MODELS` is honoured
even when `detector.store` was imported before it was set (tests do that).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from detector import roots, runfolder, store, summaries, textsafe

APP_NAME = "Deepfake Lab"
SAMPLES_DIR = store.REPO_ROOT / "sample_images"
VERDICT_BADGE = {"FAKE": "red", "REAL": "green", "UNCERTAIN": "orange", "ERROR": "gray",
                 "NO FACE": "gray", "CANNOT JUDGE": "gray"}
DISCLAIMER = ("Verdicts are statistical aids, not proof. Models make mistakes, most of all on "
              "images unlike their training data (new generators, heavy compression, resizing).")


# --- the models folder -------------------------------------------------------------------

def models_root() -> Path:
    env = os.environ.get("DEEPFAKE_LAB_MODELS")
    return Path(env).expanduser() if env else store.MODELS_DIR


def _checked_models() -> tuple[list[str], dict[str, str]]:
    """The model folders whose card passes store.validate_card, and {name: why} of the others
    (cards are cached per file and mtime, so this stays cheap)."""
    good, bad = [], {}
    for name in store.model_names(models_root()):
        try:
            card(name)
        except (store.CardError, OSError) as exc:
            bad[name] = str(exc)
        else:
            good.append(name)
    return good, bad


def model_names() -> list[str]:
    """Shipped models with a valid card, the default first (a directory listing and cached cards)."""
    return _checked_models()[0]


def default_model() -> str | None:
    return store.default_model_name(models_root())


def model_dir(name: str) -> str:
    """A model name -> the folder path every store/inference call gets (explicit paths
    make the calls independent of store.MODELS_DIR)."""
    return str(models_root() / name)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def _card(path: str, mtime: float) -> dict:
    return store.read_card(path)


def card(name: str) -> dict:
    path = model_dir(name)
    return _card(path, _mtime(Path(path) / store.CARD))


@st.cache_data(show_spinner=False, max_entries=64)
def _csv(path: str, mtime: float) -> pd.DataFrame | None:
    return pd.read_csv(path) if mtime else None


def table(folder: str | Path, filename: str) -> pd.DataFrame | None:
    """history.csv / predictions.csv / folds.csv of a model or run folder (None if absent).
    Returns a copy: cached frames are shared."""
    path = Path(folder) / filename
    df = _csv(str(path), _mtime(path))
    return None if df is None else df.copy()


def predictions(name: str) -> pd.DataFrame | None:
    return table(model_dir(name), store.PREDICTIONS)


@st.cache_resource(show_spinner="Loading model...", max_entries=store.MAX_LOADED)  # bounded: see store
def _detector(path: str, mtime: float):
    from detector import inference

    return inference.load_detector(path)


def detector(name: str):
    """The shared inference.Detector of a shipped model (loaded once per process; loaded
    anew when its network or its CLIP expert changes). A model whose CLIP expert's encoder is
    not installed is refused with the command that installs it."""
    from detector import foundation

    path = model_dir(name)
    changed = max(_mtime(Path(path) / store.MODEL_FILE), _mtime(Path(path) / runfolder.CLIP_EXPERT))
    try:
        return _detector(path, changed)
    except foundation.FoundationUnavailable as exc:
        st.error(f"Model {code_md(name)} cannot run here: {safe_md(str(exc))}", icon=":material/error:")
        st.stop()


def require_models() -> list[str]:
    """The shipped model names, or a message and a stop when there are none."""
    names, bad = _checked_models()
    for name, why in bad.items():  # a broken card: said plainly, the model left out
        st.error(f"Model {code_md(name)} is left out, its card is invalid: {safe_md(why)}",
                 icon=":material/error:")
    if not names:
        st.warning(f"No trained models found in {code_md(models_root())}. Train one with e.g. "
                   "`python train.py --model custom_cnn --data DATA --out models/custom_cnn`, "
                   "or point `DEEPFAKE_LAB_MODELS` at a folder of model folders.")
        st.stop()
    return names


def model_label(name: str) -> str:
    return f"{name} (default)" if name == default_model() else name


def model_select(label: str = "Model", key: str = "model", container=st, **kwargs) -> str:
    names = require_models()
    return container.selectbox(label, names, index=0, key=key, format_func=model_label, **kwargs)


# --- run folders (training page) ---------------------------------------------------------

def run_folders(folder: str | Path) -> list[Path]:
    """`folder` itself if it is a run folder, else its sub-folders that are (hold a card or
    a history: a run still training has only history.csv). A sub-folder, or a card, history,
    predictions or folds file, that is a link leading out of `folder` is not read: that run
    is left out (#27, `roots.inside`)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        return []

    def is_run(p: Path) -> bool:
        files = [p / f for f in (store.CARD, store.HISTORY, store.PREDICTIONS, store.FOLDS)]
        return (((p / store.CARD).is_file() or (p / store.HISTORY).is_file())
                and all(roots.inside(f, [root]) for f in [p, *files] if f.exists()))

    if is_run(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_run(p))


@st.cache_data(show_spinner=False, max_entries=64)
def _json(path: str, mtime: float) -> dict | None:
    return json.loads(Path(path).read_text()) if mtime else None


def run_card(folder: str | Path) -> dict | None:
    """A run folder's card.json (None while it is still training or if unreadable); a card
    with a field of the wrong type or range (store.validate_card) is left out with a warning
    that says which."""
    path = Path(folder) / store.CARD
    try:
        c = _json(str(path), _mtime(path))
    except (OSError, ValueError):
        return None
    if c is None:
        return None
    try:
        store.validate_card(c, path)
    except store.CardError as exc:
        st.warning(f"Run {code_md(Path(folder).name)} is left out of the reports: {safe_md(exc)}",
                   icon=":material/error:")
        return None
    return {**c, "name": c.get("name", Path(folder).name), "dir": str(folder)}


# --- small widgets -------------------------------------------------------------------------

def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def verdict_badge(verdict: str, container=st) -> None:
    container.badge(verdict, color=VERDICT_BADGE.get(verdict, "gray"))


def verdict_markdown(verdict: str) -> str:
    """The verdict as bold text on its colour's background, for a line of markdown."""
    return f":{VERDICT_BADGE.get(verdict, 'gray')}-background[**{verdict}**]"


def verdict_heading(verdict: str, container=st) -> None:
    """The image's verdict, large (a heading on its colour's background): the first thing read."""
    container.markdown(f"## {verdict_markdown(verdict)}")


def threshold_slider(label: str, default: float, key: str, container=st, **kwargs) -> float:
    """A 0..1 threshold slider; `key` should name the model(s) so a new model brings its
    own calibrated default."""
    # the exact calibrated value (not rounded to the step), so the page's numbers match the card's
    return container.slider(label, 0.0, 1.0, min(1.0, max(0.0, float(default))), 0.001, format="%.3f",
                            key=key, **kwargs)


def csv_download(df: pd.DataFrame, file_name: str, label: str = "Download CSV", key: str | None = None,
                 container=st) -> None:
    """A CSV download of `df` whose text cells cannot run as spreadsheet formulas
    (textsafe.csv_bytes: a file named "=HYPERLINK(...)" stays text). Written when clicked, not
    on every run (a Compare slider move redraws four of these); a `partial` over the frame, not
    a lambda, so it holds nothing else of the page (tests/test_download_callbacks.py)."""
    container.download_button(label, functools.partial(textsafe.csv_bytes, df), file_name=file_name, mime="text/csv",
                              key=key or f"dl_{file_name}", on_click="ignore", icon=":material/download:")


def safe_md(text) -> str:
    """User-controlled text (file, zip member, folder names, EXIF) for a Markdown string:
    escaped, so it shows as itself and never as an image, link, badge or heading."""
    return textsafe.md_escape(text)


def code_md(text) -> str:
    """User-controlled text as a literal Markdown code span (textsafe.md_code)."""
    return textsafe.md_code(text)


def plot_text(text) -> str:
    """User-controlled text (a run folder's name) for a plotly label: plotly reads a subset of
    HTML there (links included), so it is HTML-escaped."""
    import html

    return html.escape(str(text), quote=False)


fmt = summaries.fmt  # a number as text, "n/a" when missing (detector.summaries)


# --- glossary, readable tables, downloadable charts ----------------------------------------------

NA = "n/a"  # what a table shows for a value that does not exist (never a raw None / NaN / False)
GLOSSARY = {  # the README glossary, as the `help=` of the columns and widgets that show these words
    "auc": "AUC: area under the ROC curve, the chance that a random fake scores above a random real "
           "(0.5 = coin toss, 1 = perfect); it does not depend on the threshold. n/a: one class only.",
    "eer": "EER: equal error rate, the error at the threshold where reals called fake and fakes called real "
           "are equally common (lower is better). n/a: one class only.",
    "ece": "ECE: expected calibration error, the mean gap between P(fake) and the share of fakes among the "
           "images given that score (15 bins; 0 = the probabilities mean what they say).",
    "threshold": "Threshold: the P(fake) at or above which an image is called FAKE; chosen per model on val "
                 "(best balanced accuracy) and stored in its card.json.",
    "band": "Uncertainty band: scores within ± the band of the threshold are called UNCERTAIN instead of "
            "REAL or FAKE.",
    "unfamiliar": "Unfamiliar: the share of images whose features lie far from the model's training faces "
                  "(novelty above 1): do not trust their scores; high means the model's own test numbers may "
                  "not carry over. n/a: the model has no novelty reference (or the predictions predate it).",
    "ms_per_image": "n/a: no timing for this model (its card has no bench numbers).",
}


def _cell_text(value, fmt_spec: str | None) -> str:
    """One table cell as text: n/a for a missing value, yes / no for a flag, numbers in the
    column's format (printf-style, 'percent' or 'localized')."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA or value is pd.NaT:
        return NA
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if fmt_spec == "percent":
            return f"{v:.1%}"
        if fmt_spec == "localized":
            return f"{v:,.0f}" if v.is_integer() else f"{v:,}"
        if fmt_spec and fmt_spec.startswith("%"):
            try:
                return fmt_spec % v
            except (TypeError, ValueError):
                pass
        return f"{int(v)}" if v.is_integer() else f"{v:.4g}"
    return str(value)


def readable(df: pd.DataFrame, column_config: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """A table as a person reads it: a column holding any missing value (None, NaN) or a
    True/False flag becomes text, "n/a" for the missing and "yes"/"no" for flags, its numbers
    in the column's own format, and its column config a text column with the same label and
    help. Columns without either keep their numbers (they still sort as numbers). Returns the
    table and its column config (neither given one is changed)."""
    config = dict(column_config or {})
    out = df.copy()
    for col in out.columns:
        s = out[col]
        cfg = config.get(col)
        if isinstance(cfg, dict) and (cfg.get("type_config") or {}).get("type") in ("image", "link", "checkbox"):
            continue  # cells the column type draws itself (an empty image, an unticked box)
        flags = s.dtype == bool or s.map(lambda v: isinstance(v, (bool, np.bool_))).any()
        if not flags and not s.isna().any():
            continue
        label, help_, fmt_spec = (cfg, None, None) if isinstance(cfg, str) else (
            (cfg or {}).get("label"), (cfg or {}).get("help"), ((cfg or {}).get("type_config") or {}).get("format"))
        out[col] = [_cell_text(v, fmt_spec) for v in s]
        config[col] = st.column_config.TextColumn(label or col, help=help_)
    return out, config


def show_table(df: pd.DataFrame, key: str | None = None, column_config: dict | None = None, container=st,
               **kwargs):
    """st.dataframe of `readable(df)`: never a raw None / NaN / False on a page."""
    shown, config = readable(df, column_config)
    return container.dataframe(shown, hide_index=True, key=key, column_config=config, **kwargs)


def chart(fig: go.Figure, key: str, filename: str | None = None, container=st, **kwargs):
    """st.plotly_chart with plotly's own camera button saving a PNG (2x, named after the chart)
    in the modebar, shown when the pointer is over the chart (always shown, it would cover
    the titles)."""
    config = {"displaylogo": False,
              "toImageButtonOptions": {"format": "png", "filename": filename or key, "scale": 2}}
    return container.plotly_chart(fig, key=key, config=config, **kwargs)


def chart_title(*lines: str, size: int = 14, height: int = 330) -> dict:
    """A figure title on several lines (a name, then what it shows), small enough that a
    narrow column does not cut it; long names break at their underscores."""
    wrapped = []
    for line in lines:
        while len(line) > 26 and "_" in line[8:26]:
            cut = line.rindex("_", 8, 26) + 1
            wrapped.append(line[:cut])
            line = line[cut:]
        wrapped.append(line)
    # hung from the top of a figure `height` px tall (plotly anchors a multi-line title by its
    # first line's middle, hence a line's height more): the top margin must hold the lines
    return dict(text="<br>".join(wrapped), font=dict(size=size), x=0.02, xanchor="left",
                yref="container", y=1 - (6 + size) / height, yanchor="top")


# --- charts shared by the compare and training pages ------------------------------------------

def confusion_figure(counts: dict, title: str = "", height: int = 330) -> go.Figure:
    """2x2 confusion matrix (rows: true, columns: predicted) with counts and row rates."""
    m = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]], dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    rates = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    text = [[f"{int(m[i, j])}<br>{rates[i, j]:.1%}" for j in range(2)] for i in range(2)]
    fig = go.Figure(go.Heatmap(
        z=rates, x=["pred real", "pred fake"], y=["true real", "true fake"], text=text,
        texttemplate="%{text}", textfont={"size": 16}, colorscale="Blues", zmin=0, zmax=1,
        showscale=False, hovertemplate="%{y}, %{x}: %{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def data_roots() -> list[Path]:
    """The folders the operator lets the app read (detector.roots): DEEPFAKE_LAB_ROOTS and
    `[deepfake_lab] roots = [...]` in .streamlit/secrets.toml. Empty: server folders are off."""
    extra: list = []
    try:
        section = st.secrets.get("deepfake_lab") or {}
        extra = list(section.get("roots") or [])
    except Exception:  # noqa: BLE001 - no secrets file, or an unreadable one: no roots from it
        extra = []
    return roots.configured(extra=[str(r) for r in extra])


def folder_input(label: str, key: str, help: str, container=st, placeholder: str | None = None) -> Path | None:
    """A folder on this machine typed by the user, confined to the data roots
    (detector.roots.confine: `~`, `..` and symlinks resolved, anything outside refused with
    one message). Without data roots the box is not offered (a caption says how to enable it).
    None while the box is empty, refused, or off."""
    allowed = data_roots()
    if not allowed:
        container.caption(f"{label}: {roots.OFF}")
        return None
    where = ", ".join(str(r) for r in allowed)
    text = container.text_input(label, key=key, placeholder=placeholder or str(allowed[0]),
                                help=f"{help} Only folders inside the data roots: {where} "
                                     f"(a relative path starts at {allowed[0]}).")
    if not text.strip():
        return None
    try:
        return roots.confine(text, allowed)
    except roots.FolderRefused:
        container.error(roots.REFUSED, icon=":material/folder_off:")
        return None


INTERVAL_HELP = ("95% confidence interval on these images: Wilson for accuracy, DeLong for AUC. "
                 "Models whose intervals overlap may not differ; the pairwise tests below say.")


# --- scoring and forensics (detect page) ---------------------------------------------------

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]


def sample_files() -> list[Path]:
    from detector import images

    return images.list_images(SAMPLES_DIR) if SAMPLES_DIR.is_dir() else []


@st.cache_data(show_spinner=False, max_entries=64)
def _score(key: str, model_paths: tuple[str, ...], mtimes: tuple[float, ...], gradcam: bool, _data: bytes):
    from detector import images, report

    rgb = images.decode_image(_data, max_pixels=images.WEB_MAX_PIXELS)  # raises images.ImageDecodeError
    detectors = [_detector(p, m) for p, m in zip(model_paths, mtimes)]
    return report.score_image(rgb, detectors, gradcam=gradcam, digest=key)


def _model_files(models: list[str]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The models' folder paths and their model files' mtimes (cache keys: a retrained
    model is not served from the cache)."""
    paths = tuple(model_dir(m) for m in models)
    return paths, tuple(_mtime(Path(p) / store.MODEL_FILE) for p in paths)


def score(name: str, data: bytes, models: list[str], gradcam: bool):
    """report.ImageScore of uploaded bytes with these models, cached per (file bytes, models,
    model files' mtimes, gradcam): an unchanged file is not re-scored on a rerun, and
    moving the threshold only re-labels. Nothing is written to disk."""
    paths, mtimes = _model_files(models)
    result = _score(digest(data), paths, mtimes, gradcam, data)
    result.name = name  # the cached value is a fresh copy on every call
    return result


@st.cache_data(show_spinner="Computing forensic views...", max_entries=16)
def _forensics(key: str, _data: bytes) -> dict:
    from detector import forensics, images, report

    rgb = images.decode_image(_data, max_pixels=images.WEB_MAX_PIXELS)
    return {"ela": report.thumbnail(forensics.error_level(rgb), report.PREVIEW_SIDE),
            "fft": forensics.fft_spectrum(rgb),
            "profile": forensics.radial_profile(rgb),
            "exif": forensics.exif_summary(_data)}


def forensic_views(data: bytes) -> dict:
    return _forensics(digest(data), data)


# --- labelled sets scored live (compare page) ------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=8)
def _labelled(key: str, model_paths: tuple[str, ...], mtimes: tuple[float, ...], _result: dict | None = None):
    # A lookup-or-store cache: called without `_result` it is a lookup, and a miss raises
    # (exceptions are never cached); called with it, it stores. The scoring itself runs
    # outside the cached function so it can drive a progress bar made outside (elements
    # touched inside a cached function are replayed on a hit, and the bar would not exist).
    if _result is None:
        raise LookupError(key)
    return _result


def _labelled_scores(key: str, read, models: list[str], progress=None) -> dict:
    from detector import comparison

    paths, mtimes = _model_files(models)
    try:
        return {**_labelled(key, paths, mtimes), "cached": True}
    except LookupError:
        pass
    import time

    from detector import jobs

    def waiting(message: str) -> None:  # a page element touched while queued: the user can still stop it
        if progress is not None:
            progress(0.0, message)

    try:
        with jobs.heavy_job("scoring a labelled set", on_wait=waiting):
            t0 = time.perf_counter()
            items = read(progress)  # ValueError: not a zip / no real/ or fake/ folder
            read_s = time.perf_counter() - t0
            frame = comparison.score_labelled(items, paths, progress=progress)
    except jobs.JobsBusy as exc:
        raise ValueError(str(exc)) from None
    result = {"frame": pd.DataFrame(frame), "n_images": len(items.good), "read_seconds": read_s,
              "score_seconds": frame.attrs["seconds"], "seconds": time.perf_counter() - t0,
              "ms_per_image": dict(frame.attrs["ms_per_image"]),
              "errors": [(i.name, i.label, i.image) for i in items.bad], "ignored": list(items.ignored),
              "left_out": getattr(items, "left_out", 0)}
    return {**_labelled(key, paths, mtimes, _result=result), "cached": False}


def labelled_zip_scores(data: bytes, models: list[str], progress=None) -> dict:
    """A zip of real/ and fake/ folders read in memory and scored by `models`, cached per
    (zip bytes, models, model files' mtimes). A dict: frame (model, split, path, source,
    label, p_fake), n_images, read_seconds, score_seconds, seconds, ms_per_image {model: ms},
    errors [(file, label, message)], ignored [file], left_out (labelled files beyond
    jobs.WEB_MAX_FILES, not read), cached (True: timings are the first run's).
    `progress(fraction, text)` follows reading and scoring on a miss, and says so while the
    job waits for another heavy job to finish (detector.jobs). Images over
    images.WEB_MAX_PIXELS are refused (listed in errors). ValueError also when the server's
    job queue is full."""
    from detector import comparison, images, jobs

    return _labelled_scores("zip:" + digest(data),
                            lambda p: comparison.read_labelled_zip(data, progress=p, max_files=jobs.WEB_MAX_FILES,
                                                                   max_pixels=images.WEB_MAX_PIXELS),
                            models, progress)


def labelled_folder_scores(folder: str, models: list[str], progress=None) -> dict:
    """`labelled_zip_scores` for a folder on the server, cached per folder listing
    (names, sizes, mtimes)."""
    from detector import comparison, images, jobs

    return _labelled_scores("folder:" + comparison.folder_signature(folder),
                            lambda p: comparison.read_labelled_folder(folder, progress=p, max_files=jobs.WEB_MAX_FILES,
                                                                      max_pixels=images.WEB_MAX_PIXELS),
                            models, progress)


def robustness_table(name: str) -> pd.DataFrame | None:
    """A model's robustness.csv (`python -m detector robustness`), None when absent."""
    return table(model_dir(name), runfolder.ROBUSTNESS)


# --- the disagreement explorer (compare page) --------------------------------------------------

def _images_key(found) -> str:
    """A cache key for a comparison.SetImages: the zip's digest, or its folders."""
    if found.blob is not None:
        if getattr(found, "_digest", None) is None:  # hashed once per set (a zip can be large)
            found._digest = digest(found.blob)
        return "zip:" + found._digest
    return "roots:" + "|".join(str(r) for r in found.roots)


THUMBNAILS_PER_SET = 6000  # thumbnails kept per set of images (~2 KB each)


@st.cache_resource(show_spinner=False, max_entries=8)
def _thumbnail_store(key: str) -> dict:
    return {}


def thumbnails(found, names) -> list[str | None]:
    """comparison.thumbnails of a comparison.SetImages, cached per image (zip or folders,
    name): a threshold move that changes the explorer's rows draws only the new rows'."""
    from detector import comparison

    names = list(names)
    done = _thumbnail_store(_images_key(found))
    missing = [n for n in dict.fromkeys(names) if n not in done]
    if missing:
        if len(done) + len(missing) > THUMBNAILS_PER_SET:
            done.clear()
        done.update(zip(missing, comparison.thumbnails(found, missing)))
    return [done.get(n) for n in names]


@st.cache_data(show_spinner="Computing Grad-CAM heatmaps...", max_entries=16)
def _explained(key: str, model_paths: tuple[str, ...], mtimes: tuple[float, ...], _data: bytes) -> dict:
    from detector import comparison, images

    return comparison.explain_image(images.decode_image(_data, max_pixels=images.WEB_MAX_PIXELS), model_paths)


def explain_image(data: bytes, models: list[str]) -> dict:
    """comparison.explain_image of image bytes (decoded in memory) by `models`, cached per
    (bytes, models, model files' mtimes). Raises images.ImageDecodeError for a bad file."""
    paths, mtimes = _model_files(models)
    return _explained(digest(data), paths, mtimes, data)
