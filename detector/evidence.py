"""One evidence panel per image: the model verdict beside what the file itself says.

The Detect page, the HTML report, the PDF report and the results table all draw from here,
so they say the same thing:

* `attach(score, data)` puts the file's SHA-256 (of the bytes as received) and its
  provenance findings (`detector.provenance.read`) on a `report.ImageScore`;
* `panel(score, threshold, band)` is the panel as plain data: verdict, P(fake), every
  provenance finding, the C2PA outcome and trust list, the reconciled line
  (`provenance.reconcile`, the one set of rules) and each face's stability;
* `columns(...)` is the table/CSV view of it (sha256, provenance, reconciled,
  reconciled_text, and `unstable` when the stability check ran);
* `panel_html(...)` is the HTML report's rendering;
* `panel_markdown(...)` is the Detect page's: (kind, Markdown) lines in which every text the
  file supplied (EXIF/XMP/C2PA fields, quoted in the findings and the reconciled line) is
  escaped (`textsafe.md_escape`), so a URL, a link or a badge in metadata shows as text.
"""
from __future__ import annotations

import html

from detector import custody, inference, provenance, stability, textsafe

RECONCILED_LABELS = {
    provenance.DECLARED_AI: "declared AI-generated",
    provenance.DECLARED_CAPTURE: "declared camera capture",
    provenance.CONFLICT: "conflict: review",
    provenance.NO_CLAIM: "no claim either way",
}
COLUMN_HELP = {
    "sha256": "SHA-256 of the file's bytes as received (a zip member: of the member)",
    "provenance": "what the file's own metadata says: C2PA Content Credentials, XMP DigitalSourceType, "
                  "generator chunks / EXIF (unreadable: why, when a block could not be read)",
    "reconciled": "declared_ai, declared_capture, conflict or none (docs/evidence.md)",
    "reconciled_text": "the model verdict and the provenance on one line",
    "unstable": "the verdict crosses the threshold after a JPEG q70 re-save, a 0.5x down-and-up scale or a "
                "small crop shift",
}


def attach(score, data: bytes, trust_anchors: str | None = None):
    """`score` (report.ImageScore) with `sha256` and `provenance` read from `data`; returns it."""
    score.sha256 = custody.sha256(data)
    score.provenance = provenance.read(data, trust_anchors=trust_anchors)
    return score


def face_stability(score, threshold: float) -> list[str]:
    """Per face, "UNSTABLE: 0.62 -> jpeg70 0.41, ..." / "stable: ..." ("" when not checked)."""
    return [stability.text(f.p_fake, getattr(f, "stability", None), threshold) for f in score.faces]


def unstable(score, threshold: float) -> bool | None:
    """Whether any face's verdict is unstable; None when the check did not run."""
    checked = [f for f in score.faces if getattr(f, "stability", None)]
    if not checked:
        return None
    return any(stability.unstable(f.p_fake, f.stability, threshold) for f in checked)


def panel(score, threshold: float, band: float = 0.0) -> dict:
    """The evidence panel of one image as plain data (see the module docstring)."""
    prov = getattr(score, "provenance", None)
    verdict = score.verdict(threshold, band)
    code, text = provenance.reconcile(prov, verdict)
    return {"verdict": verdict, "p_fake": score.p_fake, "model": score.model_label,
            "sha256": getattr(score, "sha256", ""),
            "c2pa": prov.c2pa if prov else provenance.NONE,
            "c2pa_text": provenance.C2PA_TEXT[prov.c2pa if prov else provenance.NONE],
            "trust_list": prov.trust_list if prov else "",
            "findings": [(f.source, f.text, f.declares) for f in prov.findings] if prov else [],
            "reconciled": code, "reconciled_label": RECONCILED_LABELS[code], "reconciled_text": text,
            "stability": face_stability(score, threshold), "unstable": unstable(score, threshold)}


def columns(score, threshold: float, band: float = 0.0) -> dict:
    """The results table's evidence columns of one image."""
    p = panel(score, threshold, band)
    prov = getattr(score, "provenance", None)
    return {"sha256": p["sha256"], "provenance": prov.summary() if prov else "",
            "reconciled": p["reconciled"], "reconciled_text": p["reconciled_text"], "unstable": p["unstable"]}


def headline(score, threshold: float, band: float = 0.0) -> tuple[str, str] | None:
    """(level, text) of a line shown right under an image's verdict when its provenance overrides
    or contradicts that verdict, so a large REAL badge never stands alone beside a file that
    declares itself AI-generated; None when the provenance says nothing either way or agrees
    with a REAL/UNCERTAIN verdict. `level` is "warning" when the line overrides or contradicts
    the verdict, "info" when it agrees with a FAKE. Fixed wording only (no text from the file:
    the panel below quotes it, escaped)."""
    p = panel(score, threshold, band)
    code, verdict = p["reconciled"], p["verdict"]
    if code == provenance.DECLARED_AI:
        if verdict == inference.FAKE:
            return "info", "The file's own metadata also declares it AI-generated (see the evidence below)."
        return "warning", (f"The file's own metadata declares it AI-generated: treat it as AI-generated, whatever "
                           f"the model says ({verdict}); a generator that says so is believed (see the evidence "
                           "below).")
    if code == provenance.CONFLICT:
        return "warning", ("A valid Content Credential declares a camera capture, but the model says FAKE: "
                           "review the evidence below before acting on either.")
    return None


def has_evidence(scores) -> bool:
    """Whether any image of a batch carries provenance (the table then shows its columns)."""
    return any(getattr(s, "provenance", None) is not None for s in scores)  # an ImageError has none


COLOURS = {provenance.DECLARED_AI: "#b91c1c", provenance.CONFLICT: "#b45309",
           provenance.DECLARED_CAPTURE: "#15803d", provenance.NO_CLAIM: "#475569"}


def panel_html(score, threshold: float, band: float = 0.0) -> str:
    """The evidence panel of one image as an HTML fragment (no scripts, no external links)."""
    esc = html.escape
    p = panel(score, threshold, band)
    items = "".join(f"<li>{esc(text)}{' <b>(declares AI)</b>' if d == 'ai' else ''}"
                    f"{' <b>(declares capture)</b>' if d == 'capture' else ''}</li>"
                    for _, text, d in p["findings"]) or \
        "<li>No provenance metadata (most platforms strip it on upload: this says nothing either way).</li>"
    stab = "".join(f"<li>Face {i}: {'<b>' + esc(t) + '</b>' if t.startswith('UNSTABLE') else esc(t)}</li>"
                   for i, t in enumerate(p["stability"], start=1) if t)
    return ("<div class='evidence' style='border:1px solid #ccc;padding:8px;margin:8px 0'>"
            "<h3 style='margin:0 0 4px'>Evidence</h3>"
            f"<p><b>Model:</b> {esc(p['verdict'])} (P(fake) {p['p_fake']:.3f}, {esc(p['model'])})</p>"
            f"<p><b>Content Credentials:</b> {esc(p['c2pa_text'])}. <span class='note'>Trust list: "
            f"{esc(p['trust_list'])}.</span></p>"
            f"<ul>{items}</ul>"
            + (f"<p><b>Stability</b> (JPEG q70, 0.5x scale, crop shift):</p><ul>{stab}</ul>" if stab else "")
            + f"<p><b style='color:{COLOURS[p['reconciled']]}'>Reconciled: {esc(p['reconciled_label'])}</b>"
            f" &mdash; {esc(p['reconciled_text'])}</p>"
            + (f"<p class='note'>SHA-256 of the file as received: <code>{esc(p['sha256'])}</code></p>"
               if p["sha256"] else "")
            + "</div>")


# Streamlit Markdown icons of the reconciled line (the page renders the Markdown; the
# directives are fixed strings here, never built from the file's text)
MD_ICONS = {provenance.DECLARED_AI: ":red[:material/smart_toy:]", provenance.CONFLICT: ":orange[:material/warning:]",
            provenance.DECLARED_CAPTURE: ":green[:material/photo_camera:]", provenance.NO_CLAIM: ":material/help:"}


def panel_markdown(score, threshold: float, band: float = 0.0) -> list[tuple[str, str]]:
    """The evidence panel of one image as (kind, Markdown) lines for a Markdown renderer (the
    Detect page; kind "markdown" or "caption"). Every text in it that the file (or its name)
    supplied, and the model label, is escaped (`textsafe.md_escape`): an EXIF comment or a C2PA
    claim holding ``[click](http://evil.example)``, ``https://evil.example``, an image or
    ``:green-badge[REAL]`` shows as those characters, never as a link, an image or a badge."""
    esc = textsafe.md_escape
    p = panel(score, threshold, band)
    lines = [("markdown", f"**Model:** {esc(p['verdict'])} (P(fake) {p['p_fake']:.3f}, {esc(p['model'])})"),
             ("markdown", f"**Content Credentials:** {esc(p['c2pa_text'])}"),
             ("caption", f"Trust list used: {esc(p['trust_list'])}. Set {textsafe.md_code(provenance.TRUST_ENV)} "
                         "to a PEM file of trusted roots to use another list.")]
    tags = {"ai": " — *declares AI generation*", "capture": " — *declares a camera capture*"}
    lines += [("markdown", f"- {esc(text)}{tags.get(declares, '')}") for _, text, declares in p["findings"]] or [
        ("caption", "No provenance metadata. Most platforms strip metadata on upload: its absence says nothing "
                    "either way.")]
    lines += [("markdown", f"Face {j}: " + (f":orange[**{esc(t)}**]" if t.startswith("UNSTABLE") else esc(t)))
              for j, t in enumerate(p["stability"], start=1) if t]
    lines.append(("markdown", f"{MD_ICONS[p['reconciled']]} **Reconciled: {p['reconciled_label']}** — "
                              f"{esc(p['reconciled_text'])}"))
    if p["sha256"]:
        lines.append(("caption", f"SHA-256 of the file as received: {textsafe.md_code(p['sha256'])}"))
    return lines
