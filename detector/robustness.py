"""How a model's accuracy holds up when images are degraded the way the web degrades them.

    python -m detector robustness [--model NAME] [--data DIR] [--n N]

A stratified sample of the test split is decoded once; each perturbation is applied to the
decoded pixels with Pillow (at their own resolution, as an uploader's software would), then
the image goes through the one resize (`images.resize_to`) to the model's size and is scored
at the model card's threshold. Perturbations:

* JPEG re-compression at quality 95, 80, 60, 45, 30, 15 ("none" = as stored);
* down-scaling by 0.75, 0.5, 0.25, 0.125 and back up to the original size (1.0 = untouched);
* Gaussian blur with sigma 0.5, 1, 2, 4, 8 pixels (0 = untouched).

The last levels go past what the web usually does, to show where a model stops knowing what
it looks at: when the model folder has a novelty reference (`detector.novelty`), each row also
gives the share of images called unfamiliar and the accuracy on the rest.
The identity levels ("none", 1.0, 0) are the unperturbed pixels, so their rows repeat the
plain test numbers of the sample. The table goes to `robustness.csv` in the model's folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from detector import data, evaluation, images, novelty, runfolder, store
from detector.degrade import PERTURBATIONS, is_identity, perturb

COLUMNS = ["perturbation", "level", "n", "accuracy", "auc", "unfamiliar", "accuracy_familiar"]
CSV_NAME = runfolder.ROBUSTNESS
DEFAULT_N = 400


def default_data_dir() -> Path:
    return store.SHARED_DATA


def sample_frame(frame: pd.DataFrame, n: int | None, seed: int = 42) -> pd.DataFrame:
    """A seeded subset of `n` rows stratified on label and source (all rows when n is None
    or not smaller)."""
    if not n or n >= len(frame):
        return frame.reset_index(drop=True)
    from sklearn.model_selection import train_test_split

    for strata in (frame["label"].astype(str) + "/" + frame["source"], frame["label"], None):
        try:
            part, _ = train_test_split(frame, train_size=n, random_state=seed, stratify=strata)
            return part.sort_values("rel").reset_index(drop=True)
        except ValueError:  # a stratum too small to split
            continue
    raise AssertionError("unreachable")


def load_sample(folder: str | Path | None = None, n: int | None = DEFAULT_N, seed: int = 42,
                split: str = "test") -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The sampled rows of `split` (all images when the folder has no splits) and their
    decoded pixels. Unreadable files are left out with a note on stderr."""
    folder = Path(folder) if folder is not None else default_data_dir()
    frame = data.scan(folder)
    if split in set(frame["split"]):
        frame = frame[frame["split"] == split]
    frame = sample_frame(frame.reset_index(drop=True), n, seed)
    keep, pixels = [], []
    for i, path in enumerate(frame["path"]):
        try:
            pixels.append(images.decode_image(path))
            keep.append(i)
        except images.ImageDecodeError as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
    return frame.iloc[keep].reset_index(drop=True), pixels


def run(model=None, folder: str | Path | None = None, n: int | None = DEFAULT_N, seed: int = 42,
        write: bool = True, progress: bool = True) -> pd.DataFrame:
    """The robustness table of a model (one row per perturbation and level); written to
    `<model folder>/robustness.csv` when `write`."""
    from detector import inference

    det = inference.load_detector(model)
    folder = Path(folder) if folder is not None else default_data_dir()
    frame, rgbs = load_sample(folder, n, seed)
    if not rgbs:
        raise ValueError("no readable images to score")
    y = frame["label"].to_numpy()
    conditions = [(k, lvl) for k, levels in PERTURBATIONS.items() for lvl in levels]
    if progress:
        from tqdm.auto import tqdm
        conditions = tqdm(conditions, desc=f"{det.name}: {len(rgbs)} images", unit="condition", file=sys.stderr)
    identity_scores = None
    rows = []
    for kind, level in conditions:
        if is_identity(kind, level):
            if identity_scores is None:
                identity_scores = det.score_crops(rgbs)
            scores = identity_scores
        else:
            scores = det.score_crops([perturb(r, kind, level) for r in rgbs])
        m = evaluation.binary_metrics(y, scores.p_fake, det.threshold)
        row = {"perturbation": kind, "level": level, "n": m["n"], "accuracy": m["accuracy"], "auc": m["auc"],
               "unfamiliar": np.nan, "accuracy_familiar": np.nan}
        if scores.novelty is not None:
            familiar = ~novelty.unfamiliar(scores.novelty)
            row["unfamiliar"] = novelty.unfamiliar_share(scores.novelty)
            if familiar.any():
                row["accuracy_familiar"] = float(np.mean((scores.p_fake[familiar] >= det.threshold) == y[familiar]))
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs.update(model=det.name, threshold=det.threshold, data=str(folder.resolve()),
                       path=str(Path(det.card["dir"]) / CSV_NAME) if write else None)
    if write:
        table.to_csv(Path(det.card["dir"]) / CSV_NAME, index=False, float_format="%.4f")
    return table


def format_table(table: pd.DataFrame) -> str:
    a = table.attrs
    lines = [f"{a.get('model')} at threshold {a.get('threshold', float('nan')):.3f}, "
             f"{int(table['n'].iloc[0])} test images of {a.get('data')}", "",
             f"{'perturbation':<16}{'level':>7}{'accuracy':>10}{'auc':>8}{'unfamiliar':>12}{'acc. familiar':>15}"]

    def num(v, fmt):
        return "n/a" if pd.isna(v) else format(v, fmt)
    for r in table.itertuples():
        lines.append(f"{r.perturbation:<16}{str(r.level):>7}{r.accuracy:>10.4f}{num(r.auc, '.4f'):>8}"
                     f"{num(r.unfamiliar, '.1%'):>12}{num(r.accuracy_familiar, '.4f'):>15}")
    if a.get("path"):
        lines += ["", f"written to {a['path']}"]
    return "\n".join(lines)
