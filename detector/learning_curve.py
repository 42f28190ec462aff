"""Would more data help? A learning curve of the position-aware probes, and where it leads.

When a source stays short of its target whatever the learner, the question is whether the
data are the limit. The probes (`detector.probes`: logistic regressions on frozen trunk maps)
fit in seconds, so they can be refitted on growing, class-balanced subsets of the training
images: if AUC still rises at the full set, more images of that source would help, and a
power law through the curve (1 - AUC ~ a * n^b, the usual shape of learning curves) says
roughly how many. Only the probes are refitted (no fine-tuning): it is a cheap lower bound on
what the source's data can teach, not the shipped model's curve.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from detector import probes

TARGETS = (0.98, 0.99, 0.995)  # val AUCs the extrapolation is given for


def balanced_subset(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `size` images, half of each class (as many as there are, when one runs short)."""
    labels = np.asarray(labels).astype(int)
    half = size // 2
    picks = [rng.choice(np.flatnonzero(labels == c), min(half, int((labels == c).sum())), replace=False)
             for c in (0, 1)]
    return np.sort(np.concatenate(picks))


Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what was just done)


def n_fits(n_train: int, sizes: list[int], draws: int) -> int:
    """How many subsets `curve` fits: `draws` per size below the full set, one at it."""
    return sum(draws if s < n_train else 1 for s in set(int(s) for s in sizes))


def curve(maps: dict[str, list[np.ndarray]], labels: dict[str, np.ndarray], sizes: list[int],
          draws: int = 3, seed: int = 0, progress: Progress | None = None, offset: int = 0,
          total: int | None = None) -> pd.DataFrame:
    """The probes refitted on class-balanced subsets of the "train" maps (one array per probe,
    as `probes.maps_of` gives them) and scored on every other split of `maps`: their blend is
    the mean of the probe logits, each divided by its spread on "val" (as the shipped blend,
    without the branch). `draws` random subsets per size below the full set (one at it).
    Rows: size, draw, then auc_<split> for each scored split. `progress` hears of each fit as
    step `offset` + i of `total` (default: the fits alone)."""
    from sklearn.metrics import roc_auc_score

    y_train = np.asarray(labels["train"]).astype(int)
    scored = [s for s in maps if s != "train"]
    if "val" not in scored:
        raise ValueError("a learning curve needs val maps (the probes' spreads are taken there)")
    rng = np.random.default_rng(seed)
    rows = []
    for size in sorted(set(int(s) for s in sizes)):
        if size < 4 or size > len(y_train):
            raise ValueError(f"subset size {size} outside 4..{len(y_train)} training images")
        for draw in range(draws if size < len(y_train) else 1):
            idx = balanced_subset(y_train, size, rng)
            kernels, biases = probes.fit_linear([m[idx] for m in maps["train"]], y_train[idx])
            logits = {s: probes.linear_logits(maps[s], kernels, biases) for s in scored}
            weights = probes.spread_weights(logits["val"])
            row = {"size": len(idx), "draw": draw}
            for s in scored:
                y = np.asarray(labels[s]).astype(int)
                row[f"auc_{s}"] = float(roc_auc_score(y, logits[s] @ weights)) if len(set(y)) == 2 else float("nan")
            rows.append(row)
            if progress is not None:
                progress(offset + len(rows), total or n_fits(len(y_train), sizes, draws),
                         ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return pd.DataFrame(rows)


def power_law(table: pd.DataFrame, split: str = "val") -> dict:
    """Fit log(1 - AUC) = log(a) + b log(n) through the mean AUC per size of `split`:
    {"a", "b"} (b < 0 while the curve still climbs). Needs two sizes or more."""
    means = table.groupby("size")[f"auc_{split}"].mean()
    means = means[(means < 1) & means.notna()]
    if len(means) < 2:
        raise ValueError("a power law needs the mean AUC of at least two subset sizes below 1.0")
    b, log_a = np.polyfit(np.log(means.index.to_numpy(float)), np.log(1 - means.to_numpy()), 1)
    return {"a": float(np.exp(log_a)), "b": float(b)}


def images_for(auc: float, law: dict) -> float:
    """Training images at which the power law reaches `auc` (inf when it never climbs)."""
    if law["b"] >= 0:
        return float("inf")
    return float((((1 - auc) / law["a"]) ** (1 / law["b"])))


def default_sizes(n_train: int) -> list[int]:
    """1/8, 1/4, 1/2, 3/4 and all of the training images (at least 4 each)."""
    return sorted({max(4, n_train * k // 8) for k in (1, 2, 4, 6)} | {n_train})


def sources(data_root: str, confine: bool = True) -> list[str]:
    """The sources a split root's MANIFEST.csv names for its training images (sorted); with
    `confine` (default) files that are links leading out of `data_root` are not counted
    (`data.scan(confine=True)`)."""
    from detector import data

    frame = data.scan(data_root, confine=confine)
    return sorted(set(frame.loc[frame["split"] == "train", "source"]) - {""})


def run(data_root: str, source: str, model: str = "efficientnet_lite0", size: int = 256,
        sizes: list[int] | None = None, draws: int = 3, seed: int = 0,
        progress: Progress | None = None, max_files: int | None = None, confine: bool = True) -> dict:
    """The probes' learning curve on one `source` of a split root (train/ val/ and, when present,
    test/ scored too; test only reported), on the frozen ImageNet trunk of `model` at `size` px
    with that zoo model's probe layers and both probe views. Returns {"table", "law" (through
    val; None when val AUC reaches 1.0 at all but one size), "images_for" {AUC target: images},
    "source", "n_train"}. `max_files`: refuse (ValueError, before building the trunk) a source
    with more images than this in all its splits (the web app's per-job cap); None: no cap.
    `confine` (default): files that are links leading out of `data_root` are not read
    (`data.scan(confine=True)`; the result's "links_out" counts them); the CLI passes False."""
    from detector import data, zoo

    spec = zoo.get_spec(model)
    if not spec.probe_layers:
        raise ValueError(f"{model} names no probe layers; choose a zoo model that does (e.g. efficientnet_lite0)")
    frame = data.scan(data_root, confine=confine)
    links_out = len(frame.attrs.get("links_out", []))
    frame = frame[frame["source"] == source]
    splits = [s for s in ("train", "val", "test") if (frame["split"] == s).any()]
    if "train" not in splits or "val" not in splits:
        raise ValueError(f"no train and val images of source {source!r} under {data_root}")
    if max_files is not None and len(frame) > max_files:
        raise ValueError(f"source {source!r} has {len(frame)} images in its splits; this server draws learning "
                         f"curves of at most {max_files}: run `python -m detector learning-curve --source "
                         f"{source} --data {data_root}` instead")
    n = int((frame["split"] == "train").sum())
    sizes = sizes or default_sizes(n)
    total = len(splits) + n_fits(n, sizes, draws)
    trunk = spec.build(size, pretrained=True)
    net = probes.trunk_maps(trunk, list(spec.probe_layers), probes.VIEWS)
    maps, labels = {}, {}
    for i, s in enumerate(splits, start=1):
        part = frame[frame["split"] == s]
        maps[s] = probes.maps_of(net, data.load_pixels(part["path"].tolist(), size, progress=False))
        labels[s] = part["label"].to_numpy().astype(int)
        if progress is not None:
            progress(i, total, f"{s}: maps of {len(part)} images")
    table = curve(maps, labels, sizes, draws, seed, progress, offset=len(splits), total=total)
    try:
        law = power_law(table, "val")
    except ValueError:  # val AUC already 1.0: nothing to extrapolate, the data are not the limit
        law = None
    return {"source": source, "n_train": n, "table": table, "law": law,
            "images_for": {t: images_for(t, law) for t in TARGETS} if law else {}, "links_out": links_out}
