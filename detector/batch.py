"""One way to turn a file into `predict` rows, shared by both engines.

`python -m detector predict` scores files one after another in this process (the plain
engine, detector/__main__.py) or spread over Ray actors (`--engine ray`, detector/scale.py).
Both call `file_rows` with the file's bytes, so a row means the same whichever engine wrote
it: one row per face, or one row with `error` for a file that could not be decoded, each
with the file's SHA-256, its evidence columns and the chain-of-custody columns.
"""
from __future__ import annotations

from dataclasses import dataclass

from detector import custody, evidence, images, inference, provenance, report, stability


def expert_fields(route) -> dict:
    """Which expert of a source-experts model judged a face, and its weight ({} otherwise)."""
    top = report.top_route(route)
    return {} if top is None else {"expert": top[0], "expert_weight": round(top[1], 4)}


def fields(det: inference.Detector, block: dict, with_stability: bool = False) -> list[str]:
    """The CSV columns, in order, for this model: expert columns only for a source-experts
    model, `novelty` only for a model with a familiarity reference, `unstable` only when
    asked for; then the evidence and custody columns."""
    out = ["path", "face", "kind", "x", "y", "w", "h", "p_fake", "verdict", "reason", "error"]
    if det.sources:  # a source-experts model: which expert judged each face
        out[out.index("reason") + 1:out.index("reason") + 1] = ["expert", "expert_weight"]
    if det.familiarity is not None:  # how unlike the training faces each face is (> 1: unfamiliar)
        out.insert(out.index("error"), "novelty")
    if with_stability:
        out.insert(out.index("error"), "unstable")
    out += ["sha256", "provenance", "reconciled", "reconciled_text"]
    return out + list(custody.columns(block))


def custody_block(det: inference.Detector, threshold: float) -> dict:
    """The chain-of-custody block for a run of this model at this threshold."""
    block = custody.block([det.card["dir"]], threshold, 0.0, trust_list=provenance.trust_list_name())
    block["models"][0]["model"] = det.name
    return block


def read_bytes(path: str) -> bytes | None:
    """A local file's bytes, or None when it cannot be read (the decoder then says why)."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


@dataclass
class FileResult:
    """What one file gave: its rows (without custody columns), and the ImageScore, or for a
    file that could not be decoded an `inference.ImageError` (what the PDF report takes)."""
    rows: list[dict]
    score: report.ImageScore | inference.ImageError
    scored: bool
    not_judged: bool = False


def file_rows(path: str, data: bytes | None, det: inference.Detector, threshold: float, *,
              gradcam: bool = False, stable: bool = False, keep_preview: bool = False) -> FileResult:
    """The rows of one file: one per face (numbered from 1, left to right), or one row with
    `error` when the bytes do not decode (a bad file never stops the rest). `data` None
    means the file could not be read; the decoder, given the path, says why."""
    digest = "" if data is None else custody.sha256(data)
    try:
        rgb = images.decode_image(path if data is None else data)
    except images.ImageDecodeError as exc:
        return FileResult([{"path": path, "error": str(exc), "sha256": digest}],
                          inference.ImageError(path, str(exc), sha256=digest), scored=False)
    score = report.score_image(rgb, [det], gradcam=gradcam, name=path, stable=stable)
    if not keep_preview:
        score.preview = report.thumbnail(score.preview, 64)  # nothing to draw: keep memory flat
    evidence.attach(score, data)
    ev = {k: v for k, v in evidence.columns(score, threshold).items() if k != "unstable"}
    rows = []
    for i, f in enumerate(score.faces, start=1):
        x, y, w, h = f.box
        rows.append({"path": path, "face": i, "kind": f.kind, "x": x, "y": y, "w": w, "h": h,
                     "p_fake": round(f.p_fake, 4), "verdict": f.verdict(threshold), "reason": f.reason,
                     "error": "", "novelty": f.novelty, **expert_fields(f.route),
                     "unstable": stability.unstable(f.p_fake, f.stability, threshold), **ev})
    return FileResult(rows, score, scored=True,
                      not_judged=score.verdict(threshold) in inference.NOT_JUDGED)
