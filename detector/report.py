"""Per-image results as plain, picklable data; the annotated picture; the results table;
a self-contained HTML report. Used by the Detect page (which caches `ImageScore`s), kept
here so it is testable without Streamlit.

Scores and verdicts are kept apart on purpose: an `ImageScore` holds each model's P(fake)
per face, and the verdict is applied at display time (`verdicts`), so moving the threshold
or the uncertainty band re-labels without re-scoring. With several models (an ensemble)
the face's P(fake) is the mean of the models' calibrated P(fake).
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from detector import faces as faces_mod
from detector import images, significance
from detector import novelty as novelty_mod
from detector.inference import (
    CANNOT_JUDGE,
    FAKE,
    NO_FACE,
    NOT_JUDGED,
    REAL,
    UNCERTAIN,
    ImageError,
    cannot_judge,
    most_fake,
    verdict_for,
)

VERDICT_COLOURS = {FAKE: (220, 38, 38), REAL: (22, 163, 74), UNCERTAIN: (234, 160, 8),
                   NO_FACE: (100, 116, 139), CANNOT_JUDGE: (100, 116, 139)}
PREVIEW_SIDE = 900   # longest side of the stored preview (drawn on, shown, embedded)
CROP_SIDE = 224      # stored face thumbnails
TABLE_THUMB_SIDE = 64  # the results table's thumbnail column
NO_FACE_NOTE = "No face found: the whole image was judged"
FACE_CROP_NOTE = "The image is already a face crop: it was judged whole"
TABLE_COLUMNS = ["file", "faces", "p_fake", "verdict", "model", "ms", "error"]

# What each column of the results table (page, CSV, HTML report) means, for readers of any of them.
COLUMN_HELP = {
    "file": "the image (a zip member as zip/inner/path)",
    "label": "known from a real/ or fake/ folder in its path, or the sample gallery's LABELS.csv",
    "faces": "faces found (0: no face, the whole image was scored)",
    "p_fake": "the model's calibrated probability that the image's most fake judged face is fake; "
              "for NO FACE / CANNOT JUDGE it is a score the model cannot vouch for",
    "verdict": "FAKE / REAL / UNCERTAIN (near the threshold); NO FACE or CANNOT JUDGE when the model "
               "cannot judge the image (see reason)",
    "reason": "why the image got NO FACE / CANNOT JUDGE",
    "correct": "whether the verdict matches the label (empty when unlabelled or not decided)",
    "unfamiliar": "a face in the image is unlike the faces the model was trained on",
    "model": "the model (ensemble: the mean of the models' P(fake))",
    "expert": "source-experts model: the expert that judged the image's most fake face, with the router's weight",
    "ms": "milliseconds to find the faces and score them",
    "error": "why the file could not be analysed",
}

# What each known source's images look like, for people reading which expert judged a face.
SOURCE_KINDS = {
    "openforensics": "photos taken in the wild (its fakes: face swaps)",
    "ffhq_stylegan": "studio-like portraits (its fakes: GAN-generated faces)",
}


def source_kind(source: str) -> str:
    return SOURCE_KINDS.get(source, f"images like the {source} training data")


# The kinds of fake each training source teaches, in words an analyst reads beside a verdict.
SOURCE_FAKE_KINDS = {"openforensics": "face swaps", "ffhq_stylegan": "StyleGAN faces"}
UNSEEN_CAVEAT = "Photoshop edits and generators it never saw may pass as real"
CHANCE_AUC = 0.6  # a held-out AUC below this is called "near or below chance" beside the verdict


def coverage_text(card: dict) -> str:
    """One plain line on what a verdict of this model covers, shown beside every verdict:
    the kinds of fake it was trained on and its numbers on generators it never saw (the
    card's `coverage`, written by `python -m detector generalization --record`), e.g.
    "Trained on face swaps and StyleGAN faces; on generators it never saw: AUC 0.67-0.88
    (stylegan3 0.88, diffusion_sd21 0.67), 49-53% of their fakes caught, 17-45% passed as real with
    no warning; Photoshop edits ...". The last share is the one that misleads: a missed fake that
    the novelty check refuses is shown as CANNOT JUDGE, any other as REAL. Without measured
    held-out numbers it says so: a verdict must never look wider than it is."""
    cov = card.get("coverage") or {}
    kinds = cov.get("trained_on")
    if not kinds:
        sources = sorted((((card.get("metrics") or {}).get("test") or {}).get("per_source") or {}))
        kinds = [SOURCE_FAKE_KINDS.get(s, f"{s} fakes") for s in sources]
    trained = ("Trained on " + " and ".join(kinds)) if kinds else "Training data unknown"
    held = {k: v for k, v in (cov.get("heldout") or {}).items() if v.get("auc") is not None}
    if not held:
        return f"{trained}; not measured on generators it never saw; {UNSEEN_CAVEAT}."
    aucs = [v["auc"] for v in held.values()]
    span = f"{min(aucs):.2f}" if len(aucs) == 1 else f"{min(aucs):.2f}-{max(aucs):.2f}"
    each = ", ".join(f"{k} {v['auc']:.2f}" for k, v in held.items())

    def shares(key: str) -> str | None:
        values = [v[key] for v in held.values() if v.get(key) is not None]
        if not values:
            return None
        lo, hi = min(values), max(values)
        return f"{lo:.0%}" if lo == hi else f"{lo:.0%}-{hi:.0%}"

    caught = "".join(f", {part} {what}" for part, what in (
        (shares("recall"), "of their fakes caught"), (shares("fake_passed_as_real"), "passed as real with no warning"))
        if part)
    fprs = [v["real_called_fake"] for v in held.values() if v.get("real_called_fake") is not None]
    flagged = f", up to {max(fprs):.0%} of their real photos called fake" if fprs else ""
    chance = ": near or below chance on some" if min(aucs) < CHANCE_AUC else ""
    return f"{trained}; on generators it never saw: AUC {span} ({each}{chance}){caught}{flagged}; {UNSEEN_CAVEAT}."


def top_route(route: dict[str, float] | None) -> tuple[str, float] | None:
    """The expert with the largest router weight, and that weight."""
    if not route:
        return None
    source = max(route, key=route.get)
    return source, float(route[source])


MIXED_BELOW = 0.9  # a top router weight below this is a mix worth saying


def route_text(route: dict[str, float] | None) -> str:
    """"judged by the ffhq_stylegan expert (router 99%)", naming the runner-up when the
    router was torn ("...(router 62%), mixed with the openforensics expert (38%)"), or ""
    for a single network."""
    top = top_route(route)
    if top is None:
        return ""
    text = f"judged by the {top[0]} expert (router {top[1]:.0%})"
    if top[1] < MIXED_BELOW and len(route) > 1:
        runner_up = top_route({s: w for s, w in route.items() if s != top[0]})
        text += f", mixed with the {runner_up[0]} expert ({runner_up[1]:.0%})"
    return text


def familiarity_text(novelty: float | None) -> str:
    """A warning for a face unlike the training faces (novelty above 1), else ""."""
    if novelty is None or not novelty_mod.unfamiliar(novelty):
        return ""
    return (f"unlike the faces the model was trained on (novelty {novelty:.1f}; above 1 is further from them "
            "than 99 in 100 validation faces): the verdict is less reliable")


def familiarity_summary(card: dict) -> str:
    """One line on a model's novelty reference (its card's `novelty`), "" when it has none."""
    ref = card.get("novelty")
    if not ref:
        return ""
    check = ", ".join(f"{k.removesuffix('_unfamiliar')} {v:.0%}" for k, v in (ref.get("check") or {}).items())
    if not ref.get("usable", True):
        return f"No unfamiliar-face flag: {ref.get('why_not', 'its reference failed its check')}."
    test = ref.get("test_unfamiliar")
    return (f"Unfamiliar-face flag: fitted on {ref['n_train']} training images ({', '.join(ref['layers'])}); "
            f"limit = the {ref['quantile']:.0%} point of val distances"
            + (f"; {test:.1%} of test faces flagged" if test is not None else "")
            + (f"; check images flagged: {check}" if check else "") + ".")


def probes_summary(card: dict) -> str:
    """One line on the position-aware probes blended into an experts model's branches
    (its card's `training.probes`), "" when it has none."""
    parts = []
    for source, p in ((card.get("training") or {}).get("probes") or {}).items():
        branch, blend = p.get("val_auc_branch"), p.get("val_auc_blend")
        views = p.get("views") or ["whole"]
        parts.append(f"{source}: its branch blended with linear probes on {', '.join(p.get('layers', []))} "
                     f"({' and '.join(views)} view{'s' if len(views) > 1 else ''})"
                     + (f" (val AUC {branch:.3f} -> {blend:.3f})" if branch is not None and blend is not None else ""))
    return ("Position-aware probes: " + "; ".join(parts) + ".") if parts else ""


@dataclass
class FaceScore:
    box: tuple[int, int, int, int]              # square region scored, in original pixels
    face_box: tuple[int, int, int, int] | None  # the detector's raw box (None: no face)
    kind: str                                   # "face", "face_crop" or "no_face"
    confidence: float | None
    scores: dict[str, float]                    # model name -> calibrated P(fake)
    crop: np.ndarray = field(repr=False)        # region thumbnail, at most CROP_SIDE
    heatmap: np.ndarray | None = field(default=None, repr=False)  # Grad-CAM of the first model
    route: dict[str, float] | None = None       # the first model's router weights (experts model)
    novelty: float | None = None                # the first model's novelty (detector.novelty)
    stability: dict[str, float] | None = None   # P(fake) after each detector.stability perturbation

    @property
    def refused(self) -> tuple[str, str] | None:
        """(NO_FACE / CANNOT_JUDGE, why) when this region gets no REAL/FAKE verdict
        (`inference.cannot_judge`, the one rule), else None."""
        return cannot_judge(self.kind, self.box, self.novelty)

    @property
    def reason(self) -> str:
        return self.refused[1] if self.refused else ""

    def verdict(self, threshold: float, band: float = 0.0) -> str:
        refused = self.refused
        return refused[0] if refused else verdict_for(self.p_fake, threshold, band)

    @property
    def unfamiliar(self) -> bool:
        return self.novelty is not None and bool(novelty_mod.unfamiliar(self.novelty))

    @property
    def expert(self) -> str:
        """"judged by the X expert (router 99%)" for an experts model, else ""."""
        return route_text(self.route)

    @property
    def p_fake(self) -> float:
        return float(np.mean(list(self.scores.values())))


@dataclass
class ImageScore:
    name: str
    faces: list[FaceScore]
    models: list[str]
    seconds: float
    size: tuple[int, int]                        # original (width, height)
    preview: np.ndarray = field(repr=False)      # RGB, longest side <= PREVIEW_SIDE
    digest: str = ""
    sha256: str = ""                             # of the file's bytes as received (detector.evidence.attach)
    provenance: object = None                    # detector.provenance.Provenance (evidence.attach)

    @property
    def scale(self) -> float:
        """Preview pixels per original pixel."""
        return self.preview.shape[1] / self.size[0]

    @property
    def worst(self) -> FaceScore:
        """The face the image's verdict rests on: its most fake judgeable face (`inference.most_fake`)."""
        return most_fake(self.faces, lambda f: f.refused is None)

    @property
    def p_fake(self) -> float:
        """The image's P(fake): its most fake judgeable face (any face when none can be judged)."""
        return self.worst.p_fake

    @property
    def judged(self) -> bool:
        """Whether the image gets a REAL/FAKE/UNCERTAIN verdict (some face can be judged)."""
        return self.worst.refused is None

    @property
    def reason(self) -> str:
        """Why the image gets NO FACE / CANNOT JUDGE, "" when it is judged."""
        return self.worst.reason

    @property
    def no_face(self) -> bool:
        return len(self.faces) == 1 and self.faces[0].kind == "no_face"

    @property
    def note(self) -> str | None:
        if self.no_face:
            return NO_FACE_NOTE
        if len(self.faces) == 1 and self.faces[0].kind == "face_crop":
            return FACE_CROP_NOTE
        return None

    @cached_property
    def thumbnail_uri(self) -> str:
        """A small JPEG of the image as a data URI (the results table's thumbnail column);
        computed once per object, so a table re-drawn after every image stays cheap."""
        return images.jpeg_data_uri(thumbnail(self.preview, TABLE_THUMB_SIDE), 80)

    @property
    def model_label(self) -> str:
        return self.models[0] if len(self.models) == 1 else "ensemble(" + "+".join(self.models) + ")"

    def verdicts(self, threshold: float, band: float = 0.0) -> list[str]:
        return [f.verdict(threshold, band) for f in self.faces]

    def verdict(self, threshold: float, band: float = 0.0) -> str:
        return self.worst.verdict(threshold, band)


def thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    """A copy whose longest side is at most `side` (the image itself when it fits)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    s = side / max(h, w)
    return images.resize_to(rgb, (max(1, round(w * s)), max(1, round(h * s))))


def score_image(rgb: np.ndarray, detectors: list, *, gradcam: bool = False, name: str = "",
                digest: str = "", stable: bool = False) -> ImageScore:
    """Find the faces once, score them with every detector (inference.Detector), and keep
    what the page needs to show them. Grad-CAM is computed for the first detector only.
    `stable` also re-scores each face under detector.stability's perturbations."""
    if not detectors:
        raise ValueError("score_image needs at least one detector")
    t0 = time.perf_counter()
    regions = faces_mod.find_faces(rgb)
    results = [d.analyze(rgb, regions=regions, gradcam=gradcam and i == 0) for i, d in enumerate(detectors)]
    perturbed = [None] * len(regions)
    if stable:
        from detector import stability
        perturbed = stability.rescore(rgb, regions, detectors)
    seconds = time.perf_counter() - t0
    out = []
    for j, region in enumerate(regions):
        first = results[0].faces[j]
        out.append(FaceScore(
            box=tuple(int(v) for v in region.box),
            face_box=tuple(int(v) for v in region.face_box) if region.face_box else None,
            kind=region.kind, confidence=region.confidence,
            scores={r.model: float(r.faces[j].p_fake) for r in results},
            crop=thumbnail(region.crop, CROP_SIDE),
            heatmap=None if first.heatmap is None else np.asarray(first.heatmap, np.float32),
            route=first.route, novelty=first.novelty, stability=perturbed[j]))
    return ImageScore(name=name, faces=out, models=[r.model for r in results], seconds=seconds,
                      size=(int(rgb.shape[1]), int(rgb.shape[0])), preview=thumbnail(rgb, PREVIEW_SIDE),
                      digest=digest)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def annotate(score: ImageScore, threshold: float, band: float = 0.0) -> np.ndarray:
    """The preview with each scored region boxed and labelled in its verdict's colour.
    A whole-image region (face crop, no face) gets a frame around the picture."""
    img = Image.fromarray(np.ascontiguousarray(score.preview))
    draw = ImageDraw.Draw(img)
    s = score.scale
    width = max(2, round(max(img.size) / 250))
    font = _font(max(12, round(max(img.size) / 40)))
    for i, (face, verdict) in enumerate(zip(score.faces, score.verdicts(threshold, band))):
        colour = VERDICT_COLOURS[verdict]
        x, y, w, h = face.box
        x0, y0 = round(x * s), round(y * s)
        x1, y1 = min(img.width - 1, round((x + w) * s) - 1), min(img.height - 1, round((y + h) * s) - 1)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        label = f"{i + 1}: {verdict}" if verdict in NOT_JUDGED else f"{i + 1}: {verdict} {face.p_fake:.2f}"
        tb = draw.textbbox((0, 0), label, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = y0 - th - 2 * width if y0 - th - 2 * width >= 0 else y0 + width
        draw.rectangle([x0, ty, x0 + tw + 2 * width, ty + th + 2 * width], fill=colour)
        draw.text((x0 + width, ty + width - tb[1]), label, fill=(255, 255, 255), font=font)
    return np.asarray(img)


def correct(verdict: str, label: str) -> bool | None:
    """Whether a verdict matches a known label ("real"/"fake"): None when the label is
    unknown or nothing was decided (UNCERTAIN, ERROR)."""
    label = (label or "").strip().lower()
    if label not in ("real", "fake") or verdict not in (FAKE, REAL):
        return None
    return (verdict == FAKE) == (label == "fake")


def results_frame(scores: list[ImageScore | ImageError], threshold: float, band: float = 0.0, *,
                  labels: list[str] | None = None, thumbnails: bool = False) -> pd.DataFrame:
    """One row per image: file, faces, p_fake, verdict, model, ms, error. An entry that is a
    `ImageError` is a file that could not be analysed. When an image gets
    NO FACE / CANNOT JUDGE (`inference.cannot_judge`), `reason` (after `verdict`) says why;
    its p_fake is still given (the score on demand), but it is no verdict.

    `labels` (aligned with `scores`, "" when unknown) adds `label` after `file` and `correct`
    (True / False, empty when unknown or undecided) after `verdict`, when any is known.
    `thumbnails` adds a first column `thumbnail`: a small JPEG data URI (empty for errors).
    When the first model is a source-experts model, `expert` (after `model`) says which
    expert judged the image's most fake face; when it has a novelty reference, `unfamiliar`
    (after `verdict`) says whether any of its faces is unlike the training faces (its verdict
    may then rest on a score the model cannot vouch for)."""
    rows = []
    for s in scores:
        if isinstance(s, ImageError):
            rows.append({"file": s.name, "faces": None, "p_fake": np.nan, "verdict": "ERROR",
                         "model": s.model, "ms": np.nan, "error": s.error,
                         "thumbnail": None, "expert": "", "unfamiliar": None, "reason": ""})
            continue
        rows.append({"file": s.name, "faces": 0 if s.no_face else len(s.faces), "p_fake": round(s.p_fake, 4),
                     "verdict": s.verdict(threshold, band), "reason": s.reason, "model": s.model_label,
                     "ms": round(s.seconds * 1000, 1), "error": "",
                     "thumbnail": s.thumbnail_uri if thumbnails else None, "expert": _top_expert(s.worst.route),
                     "unfamiliar": None if s.worst.novelty is None else any(f.unfamiliar for f in s.faces)})
    columns = list(TABLE_COLUMNS)
    if any(row["reason"] for row in rows):
        columns.insert(columns.index("verdict") + 1, "reason")
    if any(row["expert"] for row in rows):
        columns.insert(columns.index("model") + 1, "expert")
    if any(row["unfamiliar"] is not None for row in rows):
        columns.insert(columns.index("verdict") + 1, "unfamiliar")
    labelled = labels is not None and any(labels)
    if labelled:
        if len(labels) != len(rows):
            raise ValueError(f"{len(labels)} labels for {len(rows)} results")
        for row, label in zip(rows, labels):
            row["label"] = label or ""
            row["correct"] = correct(row["verdict"], label)
        columns.insert(columns.index("file") + 1, "label")
        columns.insert(columns.index("verdict") + 1, "correct")
    from detector import evidence
    if evidence.has_evidence(scores):  # sha256, provenance, reconciled, reconciled_text (+ unstable)
        for row, s in zip(rows, scores):
            row.update({"sha256": s.sha256, "provenance": "", "reconciled": "", "reconciled_text": "",
                        "unstable": None} if isinstance(s, ImageError) else evidence.columns(s, threshold, band))
        columns += ["sha256", "provenance", "reconciled", "reconciled_text"]
        if any(row["unstable"] is not None for row in rows):
            columns.insert(columns.index("verdict") + 1, "unstable")
    if thumbnails:
        columns.insert(0, "thumbnail")
    df = pd.DataFrame(rows, columns=columns)
    df["faces"] = df["faces"].astype("Int64")  # empty for files that could not be read
    if labelled:
        df["correct"] = df["correct"].astype("boolean")
    if "unfamiliar" in df:
        df["unfamiliar"] = df["unfamiliar"].astype("boolean")
    if "unstable" in df:
        df["unstable"] = df["unstable"].astype("boolean")
    return df


def readable_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The results table as people read it (the page and the HTML report; the CSV keeps the
    raw one): `correct` as "right" / "wrong" / "", `unfamiliar` as "yes" / "", `ms` as a whole
    number, no P(fake) beside NO FACE / CANNOT JUDGE (it is no verdict: the image's details
    and the CSV still give it), and nothing written for what is unknown (no None, NaN, False)."""
    out = table.copy()
    if "correct" in out:
        out["correct"] = [("right" if bool(v) else "wrong") if not pd.isna(v) else "" for v in out["correct"]]
    if "unfamiliar" in out:
        out["unfamiliar"] = ["yes" if (not pd.isna(v) and bool(v)) else "" for v in out["unfamiliar"]]
    if "ms" in out:
        out["ms"] = out["ms"].round().astype("Int64")
    if "p_fake" in out:
        out.loc[out["verdict"].isin(NOT_JUDGED), "p_fake"] = np.nan
    for col in ("reason", "error", "expert", "label"):
        if col in out:
            out[col] = out[col].fillna("")
    return out


def _top_expert(route: dict[str, float] | None) -> str:
    top = top_route(route)
    return "" if top is None else f"{top[0]} ({top[1]:.0%})"


def label_accuracy(table: pd.DataFrame) -> dict | None:
    """How the verdicts of a results table (with `label` and `correct`) did on its labelled
    rows: labelled, decided (REAL/FAKE), correct, uncertain, not_judged (NO FACE / CANNOT
    JUDGE), errors, accuracy (correct /
    decided, nan when none was decided) and its 95% interval accuracy_ci (Wilson: on a
    handful of images the rate alone says little). None when no row is labelled."""
    if "label" not in table.columns:
        return None
    rows = table[table["label"].fillna("").astype(str).str.strip() != ""]
    if rows.empty:
        return None
    right = rows["correct"].astype("boolean")
    decided = int(right.notna().sum())
    n_right = int(right.fillna(False).sum())
    return {"labelled": len(rows), "decided": decided, "correct": n_right,
            "uncertain": int((rows["verdict"] == UNCERTAIN).sum()),
            "not_judged": int(rows["verdict"].isin(NOT_JUDGED).sum()),
            "errors": int((rows["verdict"] == "ERROR").sum()),
            "accuracy": n_right / decided if decided else float("nan"),
            "accuracy_ci": significance.accuracy_interval(n_right, decided)}


def faces_frame(score: ImageScore, threshold: float, band: float = 0.0) -> pd.DataFrame:
    """One row per scored region of an image, with every model's P(fake) (and the expert
    that judged it, for an experts model; the first model's novelty, when it has a reference)."""
    rows = []
    for i, (f, v) in enumerate(zip(score.faces, score.verdicts(threshold, band)), start=1):
        x, y, w, h = f.box
        rows.append({"face": i, "kind": f.kind, "x": x, "y": y, "w": w, "h": h,
                     "detector_confidence": None if f.confidence is None else round(f.confidence, 3),
                     **{f"p_fake[{m}]": round(p, 4) for m, p in f.scores.items()},
                     "p_fake": round(f.p_fake, 4), "verdict": v,
                     **({"expert": _top_expert(f.route)} if f.route else {}),
                     **({"novelty": round(f.novelty, 2)} if f.novelty is not None else {})})
    return pd.DataFrame(rows)


def _img_tag(rgb: np.ndarray, alt: str, width: int | None = None) -> str:
    uri = images.jpeg_data_uri(rgb, 88)
    w = f' width="{width}"' if width else ""
    return f'<img src="{uri}" alt="{html.escape(alt)}"{w}>'


def _html_table(table: pd.DataFrame) -> str:
    """The results table as HTML: each header explains itself on hover (`COLUMN_HELP`), blanks
    for what is unknown, P(fake) to 3 decimals, and a wrong verdict's row highlighted."""
    esc = html.escape
    shown = readable_frame(table)
    head = "".join(f"<th title='{esc(COLUMN_HELP.get(c, ''))}'>{esc(c)}</th>" for c in shown.columns)
    rows = []
    for _, row in shown.iterrows():
        cells = []
        for c in shown.columns:
            v = row[c]
            text = "" if v is None or (not isinstance(v, str) and pd.isna(v)) else (
                f"{v:.3f}" if c == "p_fake" else str(v))
            cells.append(f"<td>{esc(text)}</td>")
        wrong = " class='wrong'" if "correct" in shown and row["correct"] == "wrong" else ""
        rows.append(f"<tr{wrong}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_report(scores: list[ImageScore | dict], threshold: float, band: float = 0.0, *,
                title: str = "Deepfake Lab report", heatmap_alpha: float = 0.45,
                labels: list[str] | None = None, coverage: str = "", custody: dict | None = None) -> str:
    """A single HTML file (images embedded as base64 JPEG, no external links or scripts)
    with the summary table (what each column means under it) and, per image, its verdict
    with `coverage` (one line on what the model's verdicts cover, `coverage_text`) beside it,
    the annotated picture and every face. NO FACE / CANNOT JUDGE say why, and give the score
    only as a score the model cannot vouch for. Each image gets its evidence panel
    (detector.evidence) when its provenance was read; `custody` (detector.custody.block) is
    shown under the title; the report ends with the SHA-256 of its own content above it."""
    from detector import custody as custody_mod
    from detector import evidence, explain

    esc = html.escape
    colours = {k: "#%02x%02x%02x" % v for k, v in VERDICT_COLOURS.items()}
    scored = [s for s in scores if not isinstance(s, ImageError)]
    if custody is None and scored:  # every export carries its custody block
        from detector import provenance
        custody = custody_mod.block(scored[0].models, threshold, band, trust_list=provenance.trust_list_name())
    table = results_frame(scores, threshold, band, labels=labels)
    labels = labels if labels is not None and any(labels) else None
    cover = f"<p class='cov'>{esc(coverage)}</p>" if coverage else ""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}section{margin:2em 0}"
        ".v{color:#fff;padding:4px 10px;border-radius:6px;font-weight:700;font-size:1.3em}.faces{display:flex;"
        "gap:1em;flex-wrap:wrap}figure{margin:0;max-width:420px}.note{color:#555}.warn{color:#b45309}"
        "tr.wrong td{background:#fee2e2}.cov{color:#555;font-size:.9em}dt{font-weight:600}",
        "</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>Created {datetime.now(timezone.utc).isoformat(timespec='seconds')}. Threshold "
        f"{threshold:.3f}, uncertainty band &plusmn;{band:.3f}. A verdict is a statistical aid, "
        "not proof: the models can be wrong, especially on images unlike their training data. "
        "An image with no face, a face too small to judge, or a face unlike the training faces gets "
        "NO FACE / CANNOT JUDGE instead of a verdict.</p>",
        cover,
        ("<p class='note'>Chain of custody: " + "<br>".join(esc(x) for x in custody_mod.lines(custody)) + "</p>"
         if custody else ""),
        _html_table(table),
        "<details><summary>What the columns mean</summary><dl>"
        + "".join(f"<dt>{esc(c)}</dt><dd>{esc({**COLUMN_HELP, **evidence.COLUMN_HELP}[c])}</dd>"
                  for c in table.columns if c in COLUMN_HELP or c in evidence.COLUMN_HELP)
        + "</dl></details>",
    ]
    for k, s in enumerate(scores):
        if isinstance(s, ImageError):
            parts.append(f"<section><h2>{esc(s.name)}</h2><p>Could not be read: "
                         f"{esc(s.error)}</p></section>")
            continue
        verdict = s.verdict(threshold, band)
        parts.append(f"<section><h2>{esc(s.name)} <span class='v' style='background:{colours[verdict]}'>"
                     f"{verdict}</span></h2>")
        label = labels[k] if labels else ""
        right = correct(verdict, label)
        known = (f" &middot; label {esc(label)}" + ("" if right is None else (": right" if right else ": <b>wrong</b>"))
                 if label else "")
        score = (f"P(fake) {s.p_fake:.3f}" if s.judged else
                 f"{esc(s.reason[0].upper() + s.reason[1:])}; score {s.p_fake:.3f}, not a verdict")
        parts.append(f"<p>{score} &middot; model {esc(s.model_label)} &middot; "
                     f"{s.seconds * 1000:.0f} ms &middot; {s.size[0]}&times;{s.size[1]} px{known}</p>")
        parts.append(cover)
        if s.note and s.judged:
            parts.append(f"<p class='note'>{esc(s.note)}</p>")
        parts.append(_img_tag(annotate(s, threshold, band), s.name, width=min(640, s.preview.shape[1])))
        parts.append("<div class='faces'>")
        for i, (f, v) in enumerate(zip(s.faces, s.verdicts(threshold, band)), start=1):
            name = f"Face {i}" if f.kind == "face" else "Whole image"
            parts.append(f"<figure>{_img_tag(f.crop, name, 200)}")
            if f.heatmap is not None:
                parts.append(_img_tag(explain.overlay(f.crop, f.heatmap, heatmap_alpha), f"Grad-CAM {i}", 200))
            expert = f"<br>{esc(f.expert)}" if f.expert else ""
            if f.refused:
                detail = f" {esc(f.reason)} (score {f.p_fake:.3f}, not a verdict)"
                warning = ""
            else:
                detail = f" P(fake) {f.p_fake:.3f}"
                warning = (f"<br><span class='warn'>&#9888; {esc(familiarity_text(f.novelty))}</span>"
                           if f.unfamiliar else "")
            parts.append(f"<figcaption>{name}: <b style='color:{colours[v]}'>{v}</b>"
                         f"{detail}{expert}{warning}</figcaption></figure>")
        parts.append("</div>")
        if getattr(s, "provenance", None) is not None or any(f.stability for f in s.faces):
            parts.append(evidence.panel_html(s, threshold, band))
        parts.append("</section>")
    parts.append("</body></html>")
    return custody_mod.seal_html("\n".join(parts))
