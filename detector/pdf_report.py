"""The PDF report (fpdf2): one file to attach to a case, built from the same data as the HTML
report (`report.ImageScore`s, `evidence.panel`, `custody.block`).

Page 1 is the summary: counts per verdict, the settings, and the chain-of-custody block.
Then one section per image: the picture with its boxes, each face's verdict (and its Grad-CAM
heatmap when computed), and the evidence panel (provenance findings, the reconciled line,
stability, the file's SHA-256). A file that could not be read gets a short section saying why.

Only the PDF core fonts are used (no font files to ship), so text is reduced to Latin-1:
characters outside it print as "?" rather than fail.
"""
from __future__ import annotations

import io
from collections import Counter

import numpy as np

from detector import custody as custody_mod
from detector import evidence, images, report

THUMB_MM = 110     # width of an image's annotated picture on the page
FACE_MM = 32       # width of a face crop / heatmap


def _latin1(text: str) -> str:
    text = str(text).replace("\u2014", "-").replace("\u2013", "-").replace("\u00b7", "-").replace("\u2192", "->")
    return text.encode("latin-1", "replace").decode("latin-1")


def _jpeg(rgb: np.ndarray) -> io.BytesIO:
    return io.BytesIO(images.encode_jpeg(np.ascontiguousarray(rgb), 85))


def pdf_report(scores: list, threshold: float, band: float = 0.0, *, custody: dict | None = None,
               title: str = "Deepfake Lab report", heatmap_alpha: float = 0.45,
               labels: list[str] | None = None) -> bytes:
    """The PDF as bytes (see the module docstring)."""
    from fpdf import FPDF

    from detector import explain

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(True, margin=15)
    pdf.set_title(title)
    pdf.set_creator("Deepfake Lab")

    def text(t: str, size: float = 10, style: str = "", h: float = 5):
        pdf.set_font("helvetica", style, size)
        pdf.multi_cell(0, h, _latin1(t), new_x="LMARGIN", new_y="NEXT")

    # --- summary page ---------------------------------------------------------------------------
    pdf.add_page()
    text(title, 18, "B", 9)
    verdicts = Counter("ERROR" if isinstance(s, report.ImageError) else s.verdict(threshold, band) for s in scores)
    text(f"{len(scores)} file(s): " + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items())))
    scored = [s for s in scores if not isinstance(s, report.ImageError)]
    if any(getattr(s, "provenance", None) is not None for s in scored):
        codes = Counter(evidence.panel(s, threshold, band)["reconciled"] for s in scored)
        text("Reconciled with provenance: " + ", ".join(f"{evidence.RECONCILED_LABELS[c]} {n}"
                                                         for c, n in sorted(codes.items())))
    unstable = [s for s in scored if evidence.unstable(s, threshold)]
    if any(evidence.unstable(s, threshold) is not None for s in scored):
        text(f"Stability check: {len(unstable)} image(s) UNSTABLE (verdict crosses the threshold after a JPEG q70 "
             "re-save, a 0.5x down-and-up scale or a small crop shift)")
    text(f"Settings: threshold {threshold:.3f}, uncertainty band +-{band:.3f}.")
    text("A verdict is a statistical aid, not proof: the models can be wrong, especially on images unlike their "
         "training data. Missing metadata says nothing either way: most platforms strip it on upload.", 9)
    pdf.ln(2)
    if custody:
        text("Chain of custody", 12, "B", 7)
        for line in custody_mod.lines(custody):
            text(line, 8, h=4)
    pdf.ln(2)
    text("Files", 12, "B", 7)
    for k, s in enumerate(scores):
        if isinstance(s, report.ImageError):
            text(f"{s.name}: ERROR ({s.error}); sha256 {s.sha256 or 'n/a'}", 8, h=4)
        else:
            label = f", label {labels[k]}" if labels and labels[k] else ""
            text(f"{s.name}: {s.verdict(threshold, band)} (P(fake) {s.p_fake:.3f}{label}); sha256 "
                 f"{getattr(s, 'sha256', '') or 'n/a'}", 8, h=4)

    # --- one section per image ------------------------------------------------------------------
    for k, s in enumerate(scores):
        pdf.add_page()
        if isinstance(s, report.ImageError):
            text(s.name, 14, "B", 8)
            text(f"Could not be read: {s.error}")
            continue
        verdict = s.verdict(threshold, band)
        text(f"{s.name}: {verdict}", 14, "B", 8)
        text(f"P(fake) {s.p_fake:.3f} - model {s.model_label} - {s.seconds * 1000:.0f} ms - "
             f"{s.size[0]}x{s.size[1]} px" + (f" - label {labels[k]}" if labels and labels[k] else ""), 9)
        pic = report.annotate(s, threshold, band)
        h_mm = THUMB_MM * pic.shape[0] / pic.shape[1]
        if pdf.get_y() + h_mm > pdf.h - 20:
            h_mm = max(40.0, pdf.h - 20 - pdf.get_y())
        pdf.image(_jpeg(pic), x=pdf.l_margin, y=pdf.get_y(), h=h_mm, keep_aspect_ratio=True,
                  w=THUMB_MM)
        pdf.set_y(pdf.get_y() + h_mm + 2)
        for i, (f, v) in enumerate(zip(s.faces, s.verdicts(threshold, band)), start=1):
            if pdf.get_y() + FACE_MM + 6 > pdf.h - 15:
                pdf.add_page()
            y = pdf.get_y()
            pdf.image(_jpeg(f.crop), x=pdf.l_margin, y=y, w=FACE_MM, h=FACE_MM, keep_aspect_ratio=True)
            if f.heatmap is not None:
                pdf.image(_jpeg(explain.overlay(f.crop, f.heatmap, heatmap_alpha)), x=pdf.l_margin + FACE_MM + 3,
                          y=y, w=FACE_MM, h=FACE_MM, keep_aspect_ratio=True)
            pdf.set_xy(pdf.l_margin + 2 * FACE_MM + 8, y)
            name = f"Face {i}" if f.kind == "face" else "Whole image"
            extra = [f.expert] if f.expert else []
            if getattr(f, "reason", ""):
                extra.append(f.reason)
            stab = evidence.face_stability(s, threshold)[i - 1]
            if stab:
                extra.append(stab)
            pdf.set_font("helvetica", "", 9)
            pdf.multi_cell(0, 5, _latin1(f"{name}: {v}, P(fake) {f.p_fake:.3f}"
                                         + "".join("\n" + e for e in extra)),
                           new_x="LMARGIN", new_y="NEXT")
            pdf.set_y(max(pdf.get_y(), y + FACE_MM + 2))
        p = evidence.panel(s, threshold, band)
        text("Evidence", 12, "B", 7)
        text(f"Model: {p['verdict']} (P(fake) {p['p_fake']:.3f}, {p['model']})", 9)
        text(f"Content Credentials: {p['c2pa_text']}. Trust list: {p['trust_list'] or 'n/a'}.", 9)
        for _, line, declares in p["findings"]:
            text(f"- {line}" + (" (declares AI)" if declares == "ai" else " (declares capture)"
                                if declares == "capture" else ""), 8, h=4)
        if not p["findings"]:
            text("- No provenance metadata (most platforms strip it on upload: this says nothing either way).", 8, h=4)
        text(f"Reconciled: {p['reconciled_label']} - {p['reconciled_text']}", 9, "B")
        if p["sha256"]:
            text(f"SHA-256 of the file as received: {p['sha256']}", 8, h=4)
    return bytes(pdf.output())
