"""The evidence panel's own text (#27 item 4): what a file says of itself (EXIF ImageDescription,
Software and UserComment, a C2PA claim's generator, action agent and ingredient titles) reaches
the Detect page's Markdown only escaped (`evidence.panel_markdown`): a link, a bare URL, a
remote image or a badge in metadata shows as those characters, never as a link, an image or a
badge; the results CSV neutralises formula prefixes.

A line is hostile when, rendered as CommonMark, it holds a link or an image, when its source
holds ``evil.example`` unescaped, or when its rendered text holds what GitHub-flavoured
Markdown (Streamlit's renderer) turns into a link on its own: a bare ``https://host.tld``,
``www.host.tld`` or ``name@host.tld`` (`test_textsafe.autolinked`; GFM links them after
resolving backslash escapes, so only `textsafe.JOINER` stops it)."""
from __future__ import annotations

import io
import re
import shutil

import numpy as np
import pytest
from markdown_it import MarkdownIt
from PIL import Image
from test_injection import _formula_cells, _markdown_texts, spy_csv  # noqa: F401  (spy_csv: a fixture)
from test_textsafe import autolinked

from conftest import REPO_ROOT, smooth_image
from detector import evidence, provenance, report, textsafe

APP = str(REPO_ROOT / "streamlit_app.py")
LINK = "[click](http://evil.example)"
URL = "https://evil.example"
IMAGE = "![x](http://evil.example/beacon.png)"
RAW_HOST = re.compile(r"evil\.example")  # escaped, it reads evil\.example


def _hostile(text: str) -> bool:
    html = MarkdownIt("commonmark").render(text)
    return "<a " in html or "<img" in html or bool(RAW_HOST.search(text)) or autolinked(text) != []


def _jpeg_with_exif(description: str, comment: str, software: str | None = None, seed: int = 0) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = description  # ImageDescription
    if software:
        exif[0x0131] = software  # Software
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + comment.encode()  # UserComment
    buf = io.BytesIO()
    Image.fromarray(smooth_image(np.random.default_rng(seed), 96)).save(buf, format="JPEG", quality=90,
                                                                         exif=exif.tobytes())
    return buf.getvalue()


def _score(data: bytes) -> report.ImageScore:
    face = report.FaceScore(box=None, face_box=None, kind="no_face", confidence=None, scores={"m": 0.7},
                            crop=np.zeros((4, 4, 3), np.uint8))
    score = report.ImageScore("x.jpg", [face], ["m"], 0.01, (96, 96), np.zeros((4, 4, 3), np.uint8))
    return evidence.attach(score, data)


def test_the_hostile_check_catches_what_the_old_escaping_let_through():
    """The check itself: the page's former escaping (backslash before \\`*_[]<>#|$~ only)
    left both a link's URL and a bare URL to GFM's autolinking."""
    def old(text):
        for ch in "\\`*_[]<>#|$~":
            text = text.replace(ch, "\\" + ch)
        return text

    assert _hostile(old(LINK)) and _hostile(old(URL)) and _hostile(IMAGE)
    # backslashes before every special character (md_escape before the word joiner) are not
    # enough either: Streamlit's GFM links the URL once the escapes are resolved
    assert _hostile(textsafe._MD_SPECIAL.sub(r"\\\1", URL))


@pytest.mark.parametrize("description, comment, software", [
    (LINK, URL, URL),  # not generator names: only Software is a finding
    (f"Stable Diffusion {LINK}", f"Midjourney {URL} {IMAGE} :green-badge[REAL]", f"ComfyUI {LINK}"),
])
def test_panel_markdown_shows_exif_links_and_urls_as_text(description, comment, software):
    score = _score(_jpeg_with_exif(description, comment, software))
    texts = [f.text for f in score.provenance.findings]
    assert any("evil.example" in t for t in texts)  # the hostile text is a finding: it is shown
    lines = evidence.panel_markdown(score, 0.5)
    assert [t for _, t in lines if _hostile(t)] == []
    assert any("evil\\.example" in t for _, t in lines)  # shown, as text
    assert all(":green-badge[" not in t for _, t in lines)


def test_panel_markdown_shows_a_c2pa_claims_urls_as_text():
    c2pa = pytest.importorskip("c2pa")
    from sample_images.make_credential_samples import throwaway_chain

    certs, key, _ = throwaway_chain("Throwaway Test")
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs.encode(), key.encode(), None))
    manifest = {"claim_generator_info": [{"name": LINK, "version": "1.0"}], "title": URL,
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "softwareAgent": URL,
                     "digitalSourceType": provenance.IPTC_PREFIX + "trainedAlgorithmicMedia"}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(manifest) as b:
        b.add_ingredient({"title": IMAGE, "relationship": "parentOf"}, "image/jpeg",
                         io.BytesIO(_jpeg_with_exif("", "", seed=1)))
        b.sign(signer, "image/jpeg", io.BytesIO(_jpeg_with_exif("", "", seed=2)), out)
    score = _score(out.getvalue())
    assert score.provenance.c2pa in (provenance.TRUSTED, provenance.UNTRUSTED)
    assert sum("evil.example" in f.text for f in score.provenance.findings) >= 2
    lines = evidence.panel_markdown(score, 0.5)
    assert [t for _, t in lines if _hostile(t)] == []
    assert any("evil\\.example" in t for _, t in lines)


@pytest.fixture(scope="module")
def tiny_models(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence_text_models")
    shutil.copytree(tiny_run, root / "tiny", ignore=shutil.ignore_patterns("logs", "checkpoints"))
    (root / "DEFAULT").write_text("tiny\n")
    return root


def test_detect_page_evidence_panel_shows_metadata_links_as_text(tiny_models, monkeypatch, spy_csv):  # noqa: F811
    """Two JPEGs whose EXIF carries a link and a bare URL (one named like a formula) on the
    Detect page: every Markdown element is free of links and unescaped hosts, the panel
    shows the text, and the results CSV carries no formula cell."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(tiny_models))
    at = AppTest.from_file(APP, default_timeout=240).run()
    assert not at.exception, at.exception
    uploads = [("=1+2.jpg", _jpeg_with_exif(LINK, URL, URL, seed=3), "image/jpeg"),
               ("b.jpg", _jpeg_with_exif(f"Stable Diffusion {LINK}", f"Midjourney {URL} {IMAGE}", seed=4),
                "image/jpeg")]
    at.file_uploader(key="det_upload").set_value(uploads).run()
    assert not at.exception, at.exception
    texts = _markdown_texts(at)
    assert [t for t in texts if _hostile(t)] == []
    assert "- " + textsafe.md_escape(f"EXIF Software: {URL}") in texts  # the panel's finding, as text
    assert any("Reconciled: declared AI-generated" in t and "evil\\.example" in t for t in texts)
    assert spy_csv, "the results CSV was not built"
    assert _formula_cells(spy_csv) == []
    assert any(v == "'=1+2.jpg" for f in spy_csv for v in f.to_numpy().ravel() if isinstance(v, str))
