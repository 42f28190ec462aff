"""Data audit: what to check in a dataset before trusting any number measured on it.

    python -m detector audit DIR [--json]

DIR is a split root (train/ val/ test/ holding real/ fake/) or a single real/fake folder,
read with `data.scan` (so a MANIFEST.csv adds per-source counts). Every file is read once:
its bytes give the sha1, Pillow's header gives size, format and JPEG quantization tables,
and `images.decode_image` (the one decoder) gives the pixels for a 64-bit difference hash,
or the reason the file cannot be used.

The report answers:

* counts per split and class (and per source);
* image sizes and formats per class, and a JPEG quality estimate per class. A detector
  learns whatever separates the classes most cheaply: if every fake was saved at quality 60
  and every real at 95 (or fakes are PNG and reals JPEG, or the classes have different
  sizes), it can score well by detecting compression instead of manipulation. Such a
  difference is flagged as a "shortcut";
* unreadable files;
* exact duplicates (same bytes) and near duplicates (difference hash within
  `NEAR_DISTANCE` bits: the same picture re-encoded, slightly resized or recoloured),
  within a split and across splits. A test image that repeats a training image is
  leakage: the test number then measures memory, not generalisation.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from detector import data, images, roots

NEAR_DISTANCE = 4
"""Largest Hamming distance between two 64-bit dhashes still called a near duplicate."""

QUALITY_SHORTCUT = 5.0
"""Class medians of the JPEG quality estimate this far apart (or more) are a shortcut."""

DISTRIBUTION_SHORTCUT = 0.3
"""Total-variation distance between the classes' format (or size) distributions above which
the classes are told apart by the file alone."""

SIZE_RATIO_SHORTCUT = 1.5
"""Ratio of the classes' median pixel counts at or above which sizes are a shortcut."""

MIN_SIMILARITY = 0.95
"""A dhash match counts as a near duplicate only when the two 16x16 grayscale thumbnails
also correlate at least this much. On aligned face crops a 64-bit dhash is coarse: different
people with the same pose often land within 4 bits (on the shared 12k-image set 28 of 29
dhash matches were different people, correlation <= 0.91; the one true re-use scored 0.975).
Correlation ignores brightness/contrast changes and re-compression, so real copies pass."""

THUMB = 16

MAX_ITEMS = 1000
"""Longest list of duplicate groups / pairs written to the JSON report (counts are exact)."""

_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as PIL's "L"


def dhash(rgb: np.ndarray) -> int:
    """64-bit difference hash: 9x8 grayscale thumbnail (the one resize), one bit per
    horizontally adjacent pair, set where the left pixel is brighter."""
    small = images.resize_to(rgb, (9, 8)).astype(np.float32)
    gray = small @ _GRAY
    bits = (gray[:, :-1] > gray[:, 1:]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


@dataclass
class FileInfo:
    rel: str
    split: str
    label: str
    source: str
    sha1: str
    nbytes: int
    format: str | None = None
    width: int | None = None
    height: int | None = None
    quality: int | None = None
    dhash: int | None = None
    error: str | None = None
    thumb: np.ndarray | None = None  # THUMB x THUMB grayscale, float32, to confirm dhash matches


def inspect_file(path: str | os.PathLike, rel: str = "", split: str = "", label: str = "",
                 source: str = "") -> FileInfo:
    """Read one file once: sha1 of the bytes, header facts, decoded pixels -> dhash."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return FileInfo(rel, split, label, source, "", 0, error=f"cannot read file: {exc.strerror or exc}")
    info = FileInfo(rel, split, label, source, hashlib.sha1(raw).hexdigest(), len(raw))
    try:
        with Image.open(io.BytesIO(raw)) as img:  # header only: format, size, tables
            info.format, (info.width, info.height) = img.format, img.size
            if info.format == "JPEG":
                info.quality = images.jpeg_quality(getattr(img, "quantization", None))
    except Exception:
        pass  # the decoder below says what is wrong in words
    try:
        rgb = images.decode_image(raw)
    except images.ImageDecodeError as exc:
        info.error = str(exc)
        return info
    info.dhash = dhash(rgb)
    info.thumb = (images.resize_to(rgb, THUMB).astype(np.float32) @ _GRAY).astype(np.float32)
    return info


# --------------------------------------------------------------------------- #
# Duplicates
# --------------------------------------------------------------------------- #
def hamming_pairs(hashes: np.ndarray, max_distance: int = NEAR_DISTANCE,
                  chunk: int = 512) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j and popcount(h_i ^ h_j) <= max_distance.

    Vectorised: each chunk of rows is XORed against every later hash at once, so 13k hashes
    (85M pairs) take a second or two."""
    h = np.asarray(hashes, dtype=np.uint64).reshape(-1)
    out: list[tuple[int, int, int]] = []
    for i0 in range(0, len(h), chunk):
        i1 = min(i0 + chunk, len(h))
        dist = np.bitwise_count(h[i0:i1, None] ^ h[None, i0:])  # (rows, n - i0)
        rows, cols = np.nonzero(dist <= max_distance)
        keep = cols > rows  # column c is hash i0 + c: keep only later ones
        for r, c in zip(rows[keep], cols[keep]):
            out.append((i0 + int(r), i0 + int(c), int(dist[r, c])))
    return out


def thumb_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two grayscale thumbnails (1 = same picture up to brightness
    and contrast). Flat thumbnails have no correlation: 1.0 if they match, else 0.0."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.std() < 1e-6 or b.std() < 1e-6:
        return 1.0 if np.abs(a - b).mean() < 2.0 else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _pair_key(a: FileInfo, b: FileInfo) -> str:
    return "-".join(sorted((a.split, b.split), key=lambda s: (data.SPLITS + (s,)).index(s)))


# --------------------------------------------------------------------------- #
# Summaries
# --------------------------------------------------------------------------- #
def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None}
    return {"n": int(v.size), "mean": round(float(v.mean()), 2), "median": float(np.median(v)),
            "min": float(v.min()), "max": float(v.max())}


def _tvd(a: Counter, b: Counter, min_share: float = 0.05) -> float:
    """Total-variation distance between two categorical distributions; categories under
    `min_share` in both are lumped into "other" (so varied in-the-wild sizes compare equal)."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    keys = {k for k in a.keys() | b.keys() if a[k] / na >= min_share or b[k] / nb >= min_share}
    pa = {k: a[k] / na for k in keys}
    pb = {k: b[k] / nb for k in keys}
    pa["other"], pb["other"] = 1 - sum(pa.values()), 1 - sum(pb.values())
    return 0.5 * sum(abs(pa[k] - pb[k]) for k in pa)


def _size_summary(files: list[FileInfo]) -> dict:
    ok = [f for f in files if f.width]
    sizes = Counter(f"{f.width}x{f.height}" for f in ok)
    return {"n": len(ok), "distinct": len(sizes), "common": sizes.most_common(5),
            "width": _stats([f.width for f in ok]), "height": _stats([f.height for f in ok])}


def _shortcuts(by_class: dict[str, list[FileInfo]], group: str) -> list[dict]:
    """Ways the two classes differ in the file alone (compression, format, size)."""
    real, fake = by_class.get("real", []), by_class.get("fake", [])
    if not real or not fake:
        return []
    found = []
    qr = [f.quality for f in real if f.quality is not None]
    qf = [f.quality for f in fake if f.quality is not None]
    if qr and qf:
        mr, mf = float(np.median(qr)), float(np.median(qf))
        if abs(mr - mf) >= QUALITY_SHORTCUT:
            found.append({"kind": "jpeg_quality", "group": group, "real": mr, "fake": mf,
                          "detail": f"median JPEG quality real {mr:g} vs fake {mf:g}"})
    fr, ff = Counter(f.format for f in real if f.format), Counter(f.format for f in fake if f.format)
    d = _tvd(fr, ff)
    if d >= DISTRIBUTION_SHORTCUT:
        found.append({"kind": "format", "group": group, "distance": round(d, 3),
                      "real": dict(fr), "fake": dict(ff),
                      "detail": f"formats differ (real {dict(fr)} vs fake {dict(ff)})"})
    sr = Counter(f"{f.width}x{f.height}" for f in real if f.width)
    sf = Counter(f"{f.width}x{f.height}" for f in fake if f.width)
    d = _tvd(sr, sf)
    ar = np.median([f.width * f.height for f in real if f.width] or [0])
    af = np.median([f.width * f.height for f in fake if f.width] or [0])
    ratio = float(max(ar, af) / min(ar, af)) if min(ar, af) > 0 else 1.0
    if d >= DISTRIBUTION_SHORTCUT or ratio >= SIZE_RATIO_SHORTCUT:
        found.append({"kind": "size", "group": group, "distance": round(d, 3),
                      "median_pixels_ratio": round(ratio, 2),
                      "real": sr.most_common(3), "fake": sf.most_common(3),
                      "detail": f"sizes differ (real {sr.most_common(2)} vs fake {sf.most_common(2)}, "
                                f"median pixel ratio {ratio:.2f})"})
    return found


def _by_class(files: list[FileInfo]) -> dict[str, list[FileInfo]]:
    return {c: [f for f in files if f.label == c] for c in data.CLASS_NAMES}


def audit(root: str | os.PathLike, *, max_distance: int = NEAR_DISTANCE,
          min_similarity: float | None = MIN_SIMILARITY, progress=True,
          max_items: int = MAX_ITEMS, max_files: int | None = None, confine: bool = True) -> dict:
    """Audit a labelled folder; returns a JSON-ready dict (see the module docstring).

    Near duplicates are dhash matches (distance <= `max_distance`) whose thumbnails also
    correlate >= `min_similarity`; `min_similarity=None` keeps every dhash match.
    `progress`: True for a terminal bar, or a callable(done, total) (e.g. a page's bar).
    `max_files`: refuse (ValueError, before reading any image) a folder holding more labelled
    images than this (the web app's per-job cap, `jobs.WEB_MAX_FILES`); None: no cap.
    `confine` (default): a file below `root` that is a link leading out of it is not read; it is
    listed among the unreadable files with the reason (`data.scan(confine=True)`). The CLI
    passes False: its user may audit a folder of links."""
    t0 = time.time()
    frame = data.scan(root, confine=confine)
    if max_files is not None and len(frame) > max_files:
        raise ValueError(f"it holds {len(frame)} labelled images; this server audits at most {max_files} "
                         f"at a time: run `python -m detector audit {root}` instead")
    rows = list(zip(frame["path"], frame["rel"], frame["split"], frame["label"], frame["source"]))
    iterator = rows
    if callable(progress):
        def reporting(rows, report=progress):
            for i, row in enumerate(rows):
                if i % 200 == 0:
                    report(i, len(rows))
                yield row
            report(len(rows), len(rows))
        iterator = reporting(rows)
    elif progress:
        from tqdm.auto import tqdm
        iterator = tqdm(rows, desc="auditing", unit="img", file=sys.stderr,
                        mininterval=0.2 if os.isatty(2) else 10)
    files = [inspect_file(p, rel, split, data.CLASS_NAMES[int(label)], source)
             for p, rel, split, label, source in iterator]
    files += [FileInfo(rel, split, data.CLASS_NAMES[int(label)], "", "", 0, error=roots.LINK_OUT)
              for rel, split, label in frame.attrs.get("links_out", [])]

    splits = list(dict.fromkeys(f.split for f in files))
    sources = sorted({f.source for f in files if f.source})
    counts: dict = {s: {c: sum(f.split == s and f.label == c for f in files) for c in data.CLASS_NAMES}
                    for s in splits}
    for s in splits:
        counts[s]["total"] = counts[s]["real"] + counts[s]["fake"]
    counts["total"] = {c: sum(counts[s][c] for s in splits) for c in (*data.CLASS_NAMES, "total")}
    if sources:
        counts["by_source"] = {src: {s: {c: sum(f.source == src and f.split == s and f.label == c
                                                for f in files) for c in data.CLASS_NAMES}
                                     for s in splits} for src in sources}

    classes = _by_class(files)
    quality = {c: {**_stats([f.quality for f in fs if f.quality is not None]),
                   "histogram": dict(sorted(Counter(f.quality for f in fs if f.quality is not None).items()))}
               for c, fs in classes.items()}
    if len(sources) > 1:
        quality["by_source"] = {src: {c: _stats([f.quality for f in fs if f.quality is not None and f.source == src])
                                      for c, fs in classes.items()} for src in sources}
    shortcuts = _shortcuts(classes, "all")
    if len(sources) > 1:
        for src in sources:
            shortcuts += _shortcuts(_by_class([f for f in files if f.source == src]), src)

    # exact duplicates: same bytes
    by_sha: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        if f.sha1:
            by_sha.setdefault(f.sha1, []).append(i)
    groups = [ix for ix in by_sha.values() if len(ix) > 1]
    exact_pairs = [(g[a], g[b], 0) for g in groups for a in range(len(g)) for b in range(a + 1, len(g))]

    # near duplicates: close dhash (candidates), different bytes, confirmed by thumbnails
    hashed = [i for i, f in enumerate(files) if f.dhash is not None]
    hashes = np.array([files[i].dhash for i in hashed], dtype=np.uint64)
    candidates = [(hashed[a], hashed[b], d) for a, b, d in hamming_pairs(hashes, max_distance)
                  if files[hashed[a]].sha1 != files[hashed[b]].sha1]
    candidates = [(i, j, d, thumb_similarity(files[i].thumb, files[j].thumb)) for i, j, d in candidates]
    near_pairs = [p for p in candidates if min_similarity is None or p[3] >= min_similarity]
    unconfirmed = [p for p in candidates if not (min_similarity is None or p[3] >= min_similarity)]

    def pair_item(i, j, d, sim, kind):
        a, b = files[i], files[j]
        return {"a": a.rel, "b": b.rel, "splits": _pair_key(a, b), "labels": f"{a.label}-{b.label}",
                "distance": d, "similarity": round(sim, 4), "kind": kind}

    def pair_summary(pairs, kind):
        within = Counter(files[i].split for i, j, *_ in pairs if files[i].split == files[j].split)
        return {"pairs": len(pairs), "within_split": dict(within),
                "across_splits": sum(files[i].split != files[j].split for i, j, *_ in pairs),
                "cross_label": sum(files[i].label != files[j].label for i, j, *_ in pairs),
                "items": [pair_item(*p, kind) for p in pairs[:max_items]]}

    exact = pair_summary([(i, j, d, 1.0) for i, j, d in exact_pairs], "exact")
    exact["groups"] = len(groups)
    exact["files"] = sum(len(g) for g in groups)
    exact["group_items"] = [[files[i].rel for i in g] for g in groups[:max_items]]
    near = pair_summary(near_pairs, "near")
    near.update(max_distance=max_distance, min_similarity=min_similarity,
                distances=dict(sorted(Counter(p[2] for p in near_pairs).items())),
                dhash_pairs=len(candidates), unconfirmed=len(unconfirmed),
                unconfirmed_items=[pair_item(*p, "dhash only") for p in
                                   sorted(unconfirmed, key=lambda p: -p[3])[:max_items]])

    leaks = [(i, j, d, sim, k) for pairs, k in (([(i, j, d, 1.0) for i, j, d in exact_pairs], "exact"),
                                                (near_pairs, "near"))
             for i, j, d, sim in pairs if files[i].split != files[j].split]
    leakage = {"pairs": len(leaks), "exact": sum(p[4] == "exact" for p in leaks),
               "near": sum(p[4] == "near" for p in leaks),
               "by_splits": dict(Counter(_pair_key(files[p[0]], files[p[1]]) for p in leaks)),
               "cross_label": sum(files[p[0]].label != files[p[1]].label for p in leaks),
               "unconfirmed_dhash_pairs": sum(files[p[0]].split != files[p[1]].split for p in unconfirmed),
               "items": [pair_item(*p) for p in leaks[:max_items]]}

    return {
        "root": str(Path(root).expanduser().resolve()),
        "n_files": len(files),
        "counts": counts,
        "sizes": {c: _size_summary(fs) for c, fs in classes.items()},
        "formats": {c: dict(Counter(f.format or "unreadable" for f in fs)) for c, fs in classes.items()},
        "jpeg_quality": quality,
        "shortcuts": shortcuts,
        "unreadable": [{"path": f.rel, "split": f.split, "label": f.label, "error": f.error}
                       for f in files if f.error],
        "exact_duplicates": exact,
        "near_duplicates": near,
        "leakage": leakage,
        "seconds": round(time.time() - t0, 1),
    }


# --------------------------------------------------------------------------- #
# Tables (for the dashboard)
# --------------------------------------------------------------------------- #
def tables(r: dict) -> dict:
    """The report as pandas tables: counts (split x class), by_source, files (formats, sizes
    and JPEG quality per class), quality_histogram (long form), unreadable, pairs (exact and
    near duplicates and cross-split leaks, one row each)."""
    import pandas as pd

    c = r["counts"]
    splits = [s for s in c if s not in ("total", "by_source")]
    out = {"counts": pd.DataFrame([{"split": s, **c[s]} for s in (*splits, "total")])}
    out["by_source"] = pd.DataFrame([{"source": src, "split": s, **v}
                                     for src, per in c.get("by_source", {}).items() for s, v in per.items()])
    rows = []
    for cls in data.CLASS_NAMES:
        q, sz = r["jpeg_quality"][cls], r["sizes"][cls]
        rows.append({"class": cls, "formats": ", ".join(f"{k} {v}" for k, v in r["formats"][cls].items()),
                     "most common size": ", ".join(f"{k} ({v})" for k, v in sz["common"][:2]),
                     "distinct sizes": sz["distinct"], "JPEG quality median": q["median"],
                     "JPEG quality mean": q["mean"], "JPEG quality min": q["min"], "JPEG quality max": q["max"]})
    out["files"] = pd.DataFrame(rows)
    out["quality_histogram"] = pd.DataFrame(
        [{"class": cls, "quality": int(k), "files": v}
         for cls in data.CLASS_NAMES for k, v in r["jpeg_quality"][cls]["histogram"].items()],
        columns=["class", "quality", "files"])
    out["unreadable"] = pd.DataFrame(r["unreadable"], columns=["path", "split", "label", "error"])
    pair_cols = ["kind", "a", "b", "splits", "labels", "distance", "similarity"]
    leaks = {(p["a"], p["b"]) for p in r["leakage"]["items"]}
    items = r["exact_duplicates"]["items"] + r["near_duplicates"]["items"]
    out["pairs"] = pd.DataFrame([{**{k: p[k] for k in pair_cols}, "leak": (p["a"], p["b"]) in leaks}
                                 for p in items], columns=[*pair_cols, "leak"])
    return out


# --------------------------------------------------------------------------- #
# Text report
# --------------------------------------------------------------------------- #
def _fmt(v, spec=".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def format_report(r: dict, max_lines: int = 10) -> str:
    out = [f"Data audit of {r['root']}: {r['n_files']} files in {r['seconds']} s", "", "Counts"]
    c = r["counts"]
    splits = [s for s in c if s not in ("total", "by_source")]
    out.append(f"  {'split':<10}{'real':>8}{'fake':>8}{'total':>8}")
    for s in (*splits, "total"):
        out.append(f"  {s:<10}{c[s]['real']:>8}{c[s]['fake']:>8}{c[s]['total']:>8}")
    for src, per in c.get("by_source", {}).items():
        out.append(f"  {src}: " + ", ".join(f"{s} {v['real']}/{v['fake']}" for s, v in per.items())
                   + "  (real/fake)")

    out += ["", "Files per class"]
    out.append(f"  {'class':<6}{'formats':<26}{'sizes (most common)':<34}{'JPEG quality mean/median [min-max]'}")
    for cls in data.CLASS_NAMES:
        fm = ", ".join(f"{k} {v}" for k, v in r["formats"][cls].items()) or "-"
        sz = r["sizes"][cls]
        common = ", ".join(f"{k} {v}" for k, v in sz["common"][:2]) or "-"
        if sz["distinct"] > 2:
            common += f" (+{sz['distinct'] - 2} more)"
        q = r["jpeg_quality"][cls]
        qs = (f"{_fmt(q['mean'])}/{_fmt(q['median'], 'g')} [{_fmt(q['min'], 'g')}-{_fmt(q['max'], 'g')}]"
              if q["n"] else "n/a")
        out.append(f"  {cls:<6}{fm:<26}{common:<34}{qs}")
    for src, per in r["jpeg_quality"].get("by_source", {}).items():
        out.append(f"  {src}: median quality real {_fmt(per['real']['median'], 'g')}, "
                   f"fake {_fmt(per['fake']['median'], 'g')}")

    out += ["", "Shortcuts (the file alone tells the classes apart)"]
    out += [f"  ! [{s['group']}] {s['detail']}" for s in r["shortcuts"]] or ["  none found"]

    out += ["", f"Unreadable files: {len(r['unreadable'])}"]
    out += [f"  {u['path']}: {u['error']}" for u in r["unreadable"][:max_lines]]

    ex, nd, lk = r["exact_duplicates"], r["near_duplicates"], r["leakage"]
    out += ["", f"Exact duplicates: {ex['groups']} groups ({ex['files']} files); "
                f"{ex['pairs']} pairs, {ex['across_splits']} across splits, {ex['cross_label']} real-vs-fake"]
    out += [f"  {' = '.join(g)}" for g in ex["group_items"][:max_lines]]
    sim = "" if nd["min_similarity"] is None else f", thumbnail correlation >= {nd['min_similarity']:g}"
    out += ["", f"Near duplicates (dhash distance <= {nd['max_distance']}{sim}, different bytes): "
                f"{nd['pairs']} pairs, within splits {nd['within_split'] or 0}, {nd['across_splits']} across "
                f"splits, {nd['cross_label']} real-vs-fake"]
    out += [f"  {p['a']} ~ {p['b']} (distance {p['distance']}, similarity {p['similarity']:.3f})"
            for p in nd["items"][:max_lines]]
    if nd["unconfirmed"]:
        out.append(f"  ({nd['unconfirmed']} more dhash matches are different pictures by their thumbnails, "
                   f"best similarity {nd['unconfirmed_items'][0]['similarity']:.3f}; not counted)")
    out += ["", f"Leakage across splits: {lk['pairs']} pairs ({lk['exact']} exact, {lk['near']} near, "
                f"{lk['cross_label']} real-vs-fake)" + (f" {lk['by_splits']}" if lk["by_splits"] else "")]
    out += [f"  {p['a']} ~ {p['b']} ({p['kind']}, distance {p['distance']}, similarity {p['similarity']:.3f})"
            for p in lk["items"][:max_lines]]
    if lk["pairs"] == 0:
        out.append("  none: no val/test image repeats a training image")
    return "\n".join(out)
