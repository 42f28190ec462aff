"""Model comparison helpers behind the dashboard's compare page (no Streamlit here).

* A labelled set the user supplies -- a zip (read in memory, never written to disk) or a
  folder -- holding `real/` and `fake/` folders at any depth (`x/Real/a.jpg` counts):
  `read_labelled_zip`, `read_labelled_folder`. A sub-folder below the label folder names
  the image's source (`fake/stylegan/a.png` -> source "stylegan"). The rule is
  `data.label_of`, the one `python -m detector evaluate` reads a folder with too.
* `score_labelled`: every good image scored by each model the way `python -m detector
  evaluate` does it: the image is a face crop, so it is used whole: the one decoder
  (`images.decode_image`), the one resize (`images.resize_to`) to the model size, then
  `Detector.score_batch` (calibrated P(fake)). The result is a predictions frame with the
  columns of predictions.csv, so stored and live predictions share the page's analysis.
* `sanity_flags`: reasons to distrust a model's numbers (scores that barely vary, AUC at
  chance level).
* `pairwise_tests`: whether two models scored on the same images really differ (McNemar on
  accuracy, DeLong on AUC); `intervals_frame`: each model's 95% intervals, for a forest plot.
* The disagreement explorer: `explorer_frame` (the images the models disagree on or all get
  wrong), `SetImages` (the pictures behind a frame's `path` column, read from a zip held in
  memory or from folders on this machine; nothing is written), `thumbnails` and
  `explain_image` (each model's score and Grad-CAM overlay of one image, scored whole).

TensorFlow is imported only inside `score_labelled` and `explain_image` (through
`detector.inference`).
"""
from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np
import pandas as pd

from detector import data, evaluation, images, roots, significance, summaries

SPLIT = "labelled"  # the `split` value of live-scored rows
COLUMNS = ["split", "path", "source", "label", "p_fake"]
MAX_FILES = 5000  # images in one set
MAX_FILE_BYTES = 64 * 1024 * 1024  # one compressed image file
MAX_TOTAL_BYTES = 1024 * 1024 * 1024  # all files, as stored (zip-bomb guard)
MAX_TOTAL_PIXELS = 400_000_000  # decoded pixels held at once (~1.2 GB of RGB)
MIN_SCORE_STD = 0.01  # sanity flag: scores that barely vary
AUC_MARGIN = 0.05  # sanity flag: AUC within this of 0.5



class Item(NamedTuple):
    """One file of a labelled set: `image` is the decoded RGB array, or the error message
    (a str) when the file could not be read or decoded."""

    name: str
    label: str  # "real" / "fake" (data.CLASS_NAMES)
    image: np.ndarray | str
    source: str = ""

    @property
    def ok(self) -> bool:
        return isinstance(self.image, np.ndarray)


class LabelledSet(list):
    """A list of `Item`s; `ignored` names the files outside any real/ or fake/ folder;
    `left_out` counts the labelled files not read because the set reached `max_files`."""

    def __init__(self, items: Iterable[Item] = (), ignored: Iterable[str] = (), left_out: int = 0):
        super().__init__(items)
        self.ignored = list(ignored)
        self.left_out = left_out

    @property
    def good(self) -> list[Item]:
        return [i for i in self if i.ok]

    @property
    def bad(self) -> list[Item]:
        return [i for i in self if not i.ok]


def _decode(raw: bytes, budget: list[int], max_pixels: int | None = images.MAX_PIXELS) -> np.ndarray | str:
    if budget[0] <= 0:
        return f"skipped: the set is over {MAX_TOTAL_PIXELS // 1_000_000} megapixels in total"
    try:
        rgb = images.decode_image(raw, max_pixels=max_pixels)
    except images.ImageDecodeError as exc:
        return str(exc)
    budget[0] -= rgb.shape[0] * rgb.shape[1]
    return rgb


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo | str) -> bytes | str:
    """A zip member's bytes, or why they cannot be had (a str): too large (by the header or
    as read: the header's size is never trusted), corrupt, encrypted, unknown compression."""
    try:
        info = archive.getinfo(info) if isinstance(info, str) else info
    except KeyError:
        return "not in the zip"
    if info.file_size > MAX_FILE_BYTES:
        return f"file too large ({info.file_size / 1e6:.0f} MB)"
    try:
        with archive.open(info) as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, ValueError, EOFError) as exc:
        return f"cannot read from the zip ({exc})"
    return raw if len(raw) <= MAX_FILE_BYTES else "file too large"


def read_labelled_zip(blob: bytes, max_files: int = MAX_FILES, progress: Callable | None = None,
                      max_pixels: int | None = images.MAX_PIXELS) -> LabelledSet:
    """A zip's images under real/ and fake/ folders (any depth), decoded in memory.

    Bad files (corrupt, not an image, too large, encrypted) come back as items whose
    `image` is the error message. Raises ValueError when the bytes are not a zip or no file
    sits in a real/ or fake/ folder. `progress(fraction, text)` is called per file. At most
    `max_files` labelled files are read (the others are counted in `left_out`); `max_pixels`
    is the decoder's limit per image (the web app passes `images.WEB_MAX_PIXELS`)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"not a readable zip file ({exc})") from None
    items, ignored, left_out = [], [], 0
    total, budget = 0, [MAX_TOTAL_PIXELS]
    with archive:
        members = archive.infolist()
        for k, info in enumerate(members):
            if progress is not None:
                progress(k / max(len(members), 1), f"Reading {k + 1} of {len(members)} files")
            if info.is_dir():
                continue
            found = data.label_of(info.filename)
            if found is None:
                ignored.append(info.filename)
                continue
            label, source = found
            if len(items) >= max_files:
                left_out += 1
                continue
            if info.file_size <= MAX_FILE_BYTES and total + info.file_size > MAX_TOTAL_BYTES:
                items.append(Item(info.filename, label, "skipped: the zip holds too much data", source))
                continue
            raw = read_member(archive, info)
            if isinstance(raw, bytes):
                total += len(raw)
                raw = _decode(raw, budget, max_pixels)
            items.append(Item(info.filename, label, raw, source))
    if not items:
        raise ValueError("no files in real/ or fake/ folders: put the images in folders named "
                         "real and fake (at any depth, e.g. set/real/a.jpg)")
    return LabelledSet(items, ignored, left_out)


def read_labelled_folder(folder: str | os.PathLike, max_files: int = MAX_FILES,
                         progress: Callable | None = None, max_pixels: int | None = images.MAX_PIXELS) -> LabelledSet:
    """Like `read_labelled_zip` for a folder on this machine (names relative to it)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"not a folder: {root}")
    items, ignored, budget, left_out = [], [], [MAX_TOTAL_PIXELS], 0
    files = sorted(p for p in root.rglob("*") if p.is_file())
    base = root.resolve()
    for k, path in enumerate(files):
        if progress is not None:
            progress(k / max(len(files), 1), f"Reading {k + 1} of {len(files)} files")
        rel = path.relative_to(root).as_posix()
        found = data.label_of(rel)
        if found is None:
            ignored.append(rel)
            continue
        if not roots.inside(path, [base]):  # a link out of the folder is not followed (roots.py)
            items.append(Item(rel, found[0], roots.LINK_OUT, found[1]))
            continue
        if len(items) >= max_files:
            left_out += 1
            continue
        label, source = found
        try:
            size = path.stat().st_size
        except OSError as exc:
            items.append(Item(rel, label, f"cannot read file ({exc.strerror or exc})", source))
            continue
        if size > MAX_FILE_BYTES:
            items.append(Item(rel, label, f"file too large ({size / 1e6:.0f} MB)", source))
            continue
        try:
            raw = path.read_bytes()
        except OSError as exc:
            items.append(Item(rel, label, f"cannot read file ({exc.strerror or exc})", source))
            continue
        items.append(Item(rel, label, _decode(raw, budget, max_pixels), source))
    if not items:
        raise ValueError(f"no files in real/ or fake/ folders under {root}")
    return LabelledSet(items, ignored, left_out)


def folder_signature(folder: str | os.PathLike) -> str:
    """A cheap fingerprint of a folder's files (names, sizes, mtimes) for cache keys."""
    import hashlib

    root = Path(folder).expanduser()
    h = hashlib.sha1(str(root.resolve()).encode())
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"|{p.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def score_labelled(items: Iterable[Item], model_names: Iterable, progress: Callable | None = None,
                   batch_size: int = 32) -> pd.DataFrame:
    """Every good item scored by each model (names, or model folder paths).

    One row per (model, good image): model, split ("labelled"), path, source, label, p_fake,
    novelty (NaN for a model without a novelty reference).
    `progress(fraction, text)` is called as it goes. `frame.attrs` holds the timings:
    "seconds" (all scoring, models already loaded) and per model "model_seconds" and
    "ms_per_image" (resize + forward pass, divided by the number of images)."""
    from detector import inference

    good = [i for i in items if i.ok]
    names = list(model_names)
    report = progress or (lambda fraction, text: None)
    report(0.0, "Loading models...")
    detectors = [inference.load_detector(m) for m in names]
    frames, seconds = [], {}
    steps = max(1, len(detectors) * len(good))
    done = 0
    t_all = time.perf_counter()
    for det in detectors:
        t0 = time.perf_counter()
        scores = []
        for start in range(0, len(good), batch_size):
            chunk = good[start:start + batch_size]
            scores.append(det.score(np.stack([images.resize_to(i.image, det.size) for i in chunk])))
            done += len(chunk)
            report(done / steps, f"{det.name}: {start + len(chunk)} of {len(good)} images")
        seconds[det.name] = time.perf_counter() - t0
        scored = inference.BatchScores.concat(scores) if scores else inference.BatchScores(np.zeros(0))
        frames.append(pd.DataFrame({
            "model": det.name, "split": SPLIT, "path": [i.name for i in good],
            "source": [i.source for i in good], "label": [i.label for i in good],
            "p_fake": scored.p_fake.astype(float),
            "novelty": np.nan if scored.novelty is None else scored.novelty.astype(float)}))
    out = (pd.concat(frames, ignore_index=True) if frames
           else pd.DataFrame(columns=["model", *COLUMNS, "novelty"]))
    out.attrs.update(
        seconds=time.perf_counter() - t_all, n_images=len(good), model_seconds=seconds,
        ms_per_image={m: (1e3 * s / len(good) if good else float("nan")) for m, s in seconds.items()})
    report(1.0, f"{len(good)} image(s) scored by {len(detectors)} model(s)")
    return out


def robustness_frame(table: pd.DataFrame) -> pd.DataFrame:
    """A robustness.csv table ready to plot: `level` as a label ("none", "95", "0.75", "0"),
    rows in `robustness.PERTURBATIONS` order (mildest first; unknown levels after), with the
    95% (Wilson) interval of each accuracy as accuracy_lo / accuracy_hi."""
    from detector import robustness

    def label(v) -> str:
        try:
            return f"{float(v):g}"
        except (TypeError, ValueError):
            return str(v).strip()

    out = table.copy()
    out["level"] = [label(v) for v in out["level"]]
    known = {(k, label(v)): i for k, levels in robustness.PERTURBATIONS.items() for i, v in enumerate(levels)}
    out["order"] = [known.get((k, v), len(known)) for k, v in zip(out["perturbation"], out["level"])]
    for col in ("accuracy", "auc", "unfamiliar", "accuracy_familiar"):  # older tables lack the last two
        out[col] = pd.to_numeric(out[col], errors="coerce") if col in out else np.nan
    n = pd.to_numeric(out["n"], errors="coerce") if "n" in out else pd.Series(np.nan, index=out.index)
    ci = [significance.accuracy_interval(round(a * k), k) if np.isfinite(a) and np.isfinite(k) else (np.nan, np.nan)
          for a, k in zip(out["accuracy"], n)]  # error bars: how far accuracy on n images can move by chance
    out["accuracy_lo"], out["accuracy_hi"] = [c[0] for c in ci], [c[1] for c in ci]
    return out.sort_values(["perturbation", "order"], kind="stable").reset_index(drop=True)


def unfamiliar_share(frame: pd.DataFrame) -> float | None:
    """The share of a predictions frame's images with novelty above 1 (unlike the model's
    training faces); None when the frame has no novelty (saved predictions, no reference)."""
    from detector import novelty

    values = pd.to_numeric(frame["novelty"], errors="coerce").dropna() if "novelty" in frame else pd.Series([])
    return novelty.unfamiliar_share(values) if len(values) else None


def sanity_flags(frame: pd.DataFrame, min_std: float = MIN_SCORE_STD,
                 auc_margin: float = AUC_MARGIN) -> list[str]:
    """Why a model's predictions on a labelled set should not be trusted (empty: no reason).

    * the std of P(fake) is below `min_std`: the model gives (almost) the same score to
      everything, e.g. a collapsed network or a broken preprocessing;
    * the AUC is within `auc_margin` of 0.5: it ranks fakes no better than a coin."""
    scores = pd.to_numeric(frame["p_fake"], errors="coerce").dropna().to_numpy(float)
    if scores.size == 0:
        return ["no scores"]
    flags = []
    std = float(np.std(scores))
    if std < min_std:
        flags.append(f"scores barely vary: std of P(fake) is {std:.4f} (< {min_std:g}) over "
                     f"{scores.size} images, range {scores.min():.3f}..{scores.max():.3f}")
    valid = pd.to_numeric(frame["p_fake"], errors="coerce").notna()
    labels = frame.loc[valid, "label"].astype(str).str.strip().str.lower()
    auc = evaluation.binary_metrics(labels, scores)["auc"]  # nan with one class only
    if np.isfinite(auc) and abs(auc - 0.5) < auc_margin:
        flags.append(f"AUC {auc:.3f} is within {auc_margin:g} of 0.5: no better than chance at "
                     "telling fakes from real images")
    return flags


# --- the disagreement explorer -----------------------------------------------------------------

DISAGREE, ALL_WRONG = "disagree", "all wrong"


def aligned(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The images (by `path`) that every frame of `data` ({model: predictions frame}) scored,
    one row each, indexed by path: label, source (when any is named), then one P(fake) column
    per model (named after it). Paired comparisons need the same images for every model."""
    wide = None
    for m, d in data.items():
        part = d.drop_duplicates("path").set_index("path")
        if wide is None:
            named = "source" in part.columns and part["source"].fillna("").astype(str).str.strip().ne("").any()
            wide = part[["label", "source"] if named else ["label"]].copy()
        wide = wide.join(pd.to_numeric(part["p_fake"], errors="coerce").rename(m), how="inner")
    if wide is None:
        wide = pd.DataFrame(columns=["label"], index=pd.Index([], name="path"))
    return wide


def explorer_frame(data: dict[str, pd.DataFrame], thresholds: dict[str, float]) -> pd.DataFrame:
    """The images that the models of `data` ({model: predictions frame}) disagree on, or all
    get wrong, at `thresholds` ({model: threshold}; P(fake) >= threshold is a fake call).

    Only images (by `path`) present in every frame count. One row per image: path, label,
    source (when any is named), why ("all wrong" / "disagree"), then per model its
    P(fake) (column: the model's name) and `verdict[model]` ("fake" / "real"). All-wrong rows
    come first, then by how far apart the scores are. `attrs`: n_images (in every frame),
    n_disagree, n_all_wrong."""
    models = list(data)
    wide = aligned(data)
    scores = wide[models].to_numpy(float).reshape(len(wide), len(models))
    calls = scores >= np.array([float(thresholds[m]) for m in models])
    truth = evaluation._as_labels(wide["label"].to_numpy()).astype(bool)
    wrong = (calls != truth[:, None]).all(axis=1) if models else np.zeros(len(wide), bool)
    differ = calls.any(axis=1) & ~calls.all(axis=1)
    out = wide.reset_index()
    out.insert(len(out.columns) - len(models), "why", np.where(wrong, ALL_WRONG, np.where(differ, DISAGREE, "")))
    for j, m in enumerate(models):
        out[f"verdict[{m}]"] = np.where(calls[:, j], "fake", "real")
    out["_spread"] = np.ptp(scores, axis=1) if models else 0.0
    out["_order"] = (out["why"] != ALL_WRONG).astype(int)
    out = out[(wrong | differ)].sort_values(["_order", "_spread", "path"], ascending=[True, False, True],
                                            kind="stable").drop(columns=["_order", "_spread"])
    out = out.reset_index(drop=True)
    out.attrs.update(n_images=len(wide), n_disagree=int(differ.sum()), n_all_wrong=int(wrong.sum()))
    return out


def preselect(names: Iterable[str], cards: dict[str, dict], default: str | None = None, n: int = 2) -> list[str]:
    """The models a comparison starts with: the default model and the next best ones (by the
    test AUC on their cards, val AUC without one), `n` in all, in `names`' order. Weak
    baselines are one click away instead of crowding the charts (and the page's time)."""
    names = list(names)

    def auc(name: str) -> float:
        metrics = (cards.get(name) or {}).get("metrics") or {}
        for split in ("test", "val"):
            try:
                value = float((metrics.get(split) or {}).get("auc"))
            except (TypeError, ValueError):
                continue
            if np.isfinite(value):
                return value
        return float("-inf")

    first = [default] if default in names else []
    rest = sorted((m for m in names if m not in first), key=lambda m: -auc(m))  # stable: ties keep order
    keep = set(first + rest[:max(n - len(first), 0)])
    return [m for m in names if m in keep]


def thin_curve(points: pd.DataFrame, x: str, y: str, tolerance: float = 0.002) -> pd.DataFrame:
    """The rows of a curve (ROC, PR: sorted along it) that a chart needs: the first and last,
    and each row whose `x` or `y` moved by more than `tolerance` (on a 0..1 axis; 0.002 is under
    a pixel of a 420 px chart) from the last row kept. A PR curve of 1,400 images keeps a few
    hundred points: the browser redraws it on every threshold move."""
    if len(points) <= 2:
        return points
    xs, ys = points[x].to_numpy(float), points[y].to_numpy(float)
    keep = [0]
    for i in range(1, len(points) - 1):
        j = keep[-1]
        if abs(xs[i] - xs[j]) > tolerance or abs(ys[i] - ys[j]) > tolerance:
            keep.append(i)
    keep.append(len(points) - 1)
    return points.iloc[keep]


def data_roots(*cards: dict) -> list[Path]:
    """Where the images named in the cards' predictions.csv may be on this machine. Those
    paths are relative to the data folder a model was trained on: the folder recorded in
    each card (`data.path`), then `shared/data` beside the repository."""
    from detector import store

    roots = []
    for card in cards:
        path = (card.get("data") or {}).get("path") if isinstance(card, dict) else None
        if path:
            roots.append(Path(path).expanduser())
    roots.append(store.SHARED_DATA)
    return list(dict.fromkeys(roots))


class SetImages:
    """The pictures behind a predictions frame's `path` column, read on demand and never
    written anywhere: members of a zip held in memory (`blob`, as read by
    `read_labelled_zip`), or files relative to the first of `roots` that has them."""

    def __init__(self, blob: bytes | None = None, roots: Iterable[str | os.PathLike] = ()):
        self.blob = blob
        self.roots = [Path(r).expanduser() for r in roots]

    def where(self) -> str:
        """Where the images are looked for, in words."""
        if self.blob is not None:
            return "the uploaded zip"
        return ", ".join(str(r) for r in self.roots) or "nowhere"

    def path(self, name: str) -> Path | None:
        """The file of `name` under the roots (None: not on this machine). Relative names
        must stay inside their root; absolute ones (predictions of another folder) are used
        as they are."""
        if Path(name).is_absolute():
            return Path(name) if Path(name).is_file() else None
        for root in self.roots:
            try:
                base = root.resolve()
                candidate = (base / name).resolve()
            except OSError:
                continue
            if candidate.is_relative_to(base) and candidate.is_file():
                return candidate
        return None

    def read_many(self, names: Iterable[str]) -> Iterable[tuple[str, bytes | None]]:
        """(name, file bytes or None when it is not here / unreadable) for each name; a
        zip is opened once for all of them."""
        names = list(names)
        if self.blob is None:
            for name in names:
                path = self.path(name)
                try:
                    raw = path.read_bytes() if path is not None and path.stat().st_size <= MAX_FILE_BYTES else None
                except OSError:
                    raw = None
                yield name, raw
            return
        try:
            archive = zipfile.ZipFile(io.BytesIO(self.blob))
        except (zipfile.BadZipFile, OSError, ValueError):
            yield from ((name, None) for name in names)
            return
        with archive:
            for name in names:
                raw = read_member(archive, name)
                yield name, raw if isinstance(raw, bytes) else None

    def read(self, name: str) -> bytes | None:
        return dict(self.read_many([name]))[name]


def thumbnails(source: SetImages, names: Iterable[str], side: int = 64) -> list[str | None]:
    """A small JPEG `data:` URI per name (longest side `side`), None where the image is not
    on this machine or cannot be decoded."""
    from detector.report import thumbnail

    out = []
    for _, raw in source.read_many(names):
        try:
            out.append(None if raw is None else images.jpeg_data_uri(thumbnail(images.decode_image(raw), side)))
        except images.ImageDecodeError:
            out.append(None)
    return out


def explain_image(rgb: np.ndarray, model_names: Iterable, display_side: int = 512) -> dict:
    """One image explained by each model (names, or model folder paths), scored the way
    `score_labelled` scores it: whole, through the one resize, calibrated P(fake).

    {"image": the image with its longest side at most `display_side`, "views": per model
    {"model", "p_fake", "threshold" (the card's), "heatmap" ([0, 1] Grad-CAM map, None when
    the model names no Grad-CAM layer), "overlay" (the heatmap over "image"; "image"
    itself without a heatmap)}}."""
    from detector import explain, inference
    from detector.report import thumbnail

    rgb = images.check_rgb(rgb)
    shown = thumbnail(rgb, display_side)
    views = []
    for name in model_names:
        det = inference.load_detector(name)
        p_fake = float(det.score_batch(images.resize_to(rgb, det.size)[None])[0])
        (heatmap,) = det.heatmaps([rgb])
        views.append({"model": det.name, "p_fake": p_fake, "threshold": det.threshold, "heatmap": heatmap,
                      "overlay": shown if heatmap is None else explain.overlay(shown, heatmap)})
    return {"image": shown, "views": views}


# --- are the differences real? ------------------------------------------------------------------

SIGNIFICANCE = 0.05  # a pairwise difference with p below this is called real


def pairwise_tests(data: dict[str, pd.DataFrame], thresholds: dict[str, float],
                   source: str | None = None) -> pd.DataFrame:
    """Every pair of models of `data` tested on the images all of them scored (a score each; optionally
    of one `source` only): exact McNemar on accuracy at each model's threshold, DeLong's paired
    test on AUC (`significance.paired_comparison`). One row per pair: model_a, model_b, n,
    accuracy_a, accuracy_b, only_a / only_b (images only that model gets right), accuracy_p,
    auc_a, auc_b, auc_diff with its 95% interval (auc_diff_lo, auc_diff_hi), auc_p, and
    `finding`: which model is better and on what, or that the images cannot tell them apart."""
    models = list(data)
    wide = aligned(data).dropna(subset=models)  # an image a model could not score says nothing
    if source is not None:
        wide = wide[wide["source"].astype(str) == source] if "source" in wide.columns else wide.iloc[:0]
    y = evaluation._as_labels(wide["label"].to_numpy())
    rows = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            r = significance.paired_comparison(y, wide[a].to_numpy(float), thresholds[a],
                                               wide[b].to_numpy(float), thresholds[b])
            lo, hi = r.pop("auc_diff_ci")
            rows.append({"model_a": a, "model_b": b, **r, "auc_diff_lo": lo, "auc_diff_hi": hi,
                         "finding": _finding(a, b, r)})
    columns = ["model_a", "model_b", "finding", "n", "accuracy_a", "accuracy_b", "only_a", "only_b", "accuracy_p",
               "auc_a", "auc_b", "auc_diff", "auc_diff_lo", "auc_diff_hi", "auc_p"]
    return pd.DataFrame(rows, columns=columns)


def intervals_frame(data: dict[str, pd.DataFrame], thresholds: dict[str, float],
                    source: str | None = None) -> pd.DataFrame:
    """Each model's accuracy (at its threshold) and AUC with 95% intervals, on all of its images
    or one `source`: rows model, metric ("accuracy" / "auc"), value, lo, hi, n. What a forest
    plot draws: models whose bars overlap may not differ."""
    rows = []
    for m, d in data.items():
        if source is not None:
            d = d[d["source"].astype(str) == source] if "source" in d.columns else d.iloc[:0]
        rows += summaries.interval_rows(m, evaluation.binary_metrics(d["label"], d["p_fake"], thresholds[m]))
    return pd.DataFrame(rows, columns=summaries.INTERVAL_COLUMNS)


def _finding(a: str, b: str, r: dict) -> str:
    """One line a person reads: which differences hold at the 5% level."""
    said: dict[str, list[str]] = {}
    if r["accuracy_p"] < SIGNIFICANCE:
        said.setdefault(a if r["only_a"] > r["only_b"] else b, []).append("more accurate")
    if np.isfinite(r["auc_p"]) and r["auc_p"] < SIGNIFICANCE:
        said.setdefault(a if r["auc_diff"] > 0 else b, []).append("higher AUC")
    return "; ".join(f"{m}: {', '.join(c)}" for m, c in said.items()) or "no real difference on these images"
