"""Evidence beyond the model (#25): provenance from real files made here (a JPEG signed with
c2pa-python's Builder and a throwaway certificate chain, the same file tampered, PNGs with
AUTOMATIC1111 / ComfyUI / NovelAI chunks, XMP DigitalSourceType, EXIF generator hints, a
20 MB XMP packet, a garbage C2PA box), the reconcile rules (one test per rule), the chain of
custody, the stability check, and the panel in the table, the HTML and the PDF report.
No TensorFlow: stand-in detectors and face finder."""
from __future__ import annotations

import io
import json
import re
import struct

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from detector import custody, evidence, faces, images, pdf_report, provenance, report, stability
from detector.inference import FAKE, REAL, UNCERTAIN, FaceResult, ImageResult

c2pa = pytest.importorskip("c2pa")
x509 = pytest.importorskip("cryptography.x509")

AI_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


# --------------------------------------------------------------------------------------------
# Files made here
# --------------------------------------------------------------------------------------------
def _photo(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 220, 160, dtype=np.float64)[None, :, None] + rng.normal(0, 12, (120, 160, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _jpeg(rgb=None, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_photo() if rgb is None else rgb).save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


def _png(**texts) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


@pytest.fixture(scope="module")
def chain():
    """A throwaway root CA and a signing certificate under it (C2PA refuses self-signed
    signing certificates): (chain PEM, key PEM, root PEM), made as the shipped samples are."""
    from sample_images.make_credential_samples import throwaway_chain

    return throwaway_chain("Throwaway Test")


def _sign(chain, data: bytes, source_type: str, ingredient: bool = False) -> bytes:
    certs, key, _ = chain
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs.encode(), key.encode(), None))
    manifest = {"claim_generator_info": [{"name": "deepfake-lab-test", "version": "1.0"}], "title": "t.jpg",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": source_type}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(manifest) as b:
        if ingredient:
            b.add_ingredient({"title": "parent.jpg", "relationship": "parentOf"}, "image/jpeg", io.BytesIO(_jpeg()))
        b.sign(signer, "image/jpeg", io.BytesIO(data), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def signed_ai(chain):
    return _sign(chain, _jpeg(), AI_TYPE)


@pytest.fixture(scope="module")
def signed_camera(chain):
    return _sign(chain, _jpeg(_photo(1)), CAPTURE_TYPE)


def _tamper(data: bytes) -> bytes:
    """Bytes changed in the image data after signing (far from the manifest at the start)."""
    b = bytearray(data)
    b[-200] ^= 0xFF
    return bytes(b)


def _garbage_c2pa(signed: bytes) -> bytes:
    """The signed file with its C2PA box's content after the "c2pa" label replaced by noise."""
    i = signed.find(b"\xff\xeb")
    end = i + 2 + struct.unpack(">H", signed[i + 2:i + 4])[0]
    j = signed.find(b"c2pa", i) + 5
    return signed[:j] + np.random.default_rng(0).bytes(end - j) + signed[end:]


def _huge_xmp_jpeg(mb: int = 20) -> bytes:
    """A JPEG with a standard XMP packet that points to an extended XMP of `mb` MB, carried in
    extended-XMP APP1 segments (the only way a JPEG holds XMP above 64 KB)."""
    plain = _jpeg()
    std = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmpNote:HasExtendedXMP="0123456789ABCDEF0123456789ABCDEF"/></rdf:RDF></x:xmpmeta>')
    segs = [b"\xff\xe1" + struct.pack(">H", 2 + len(provenance.XMP_STD) + len(std)) + provenance.XMP_STD + std]
    total, chunk = mb * 1024 ** 2, 65000
    body = (b"<x:xmpmeta>" + b"A" * (total - 24) + b"</x:xmpmeta>")
    for off in range(0, total, chunk):
        piece = body[off:off + chunk]
        head = provenance.XMP_EXT + b"0123456789ABCDEF0123456789ABCDEF" + struct.pack(">II", total, off)
        segs.append(b"\xff\xe1" + struct.pack(">H", 2 + len(head) + len(piece)) + head + piece)
    return plain[:2] + b"".join(segs) + plain[2:]


# --------------------------------------------------------------------------------------------
# C2PA
# --------------------------------------------------------------------------------------------
def test_signed_jpeg_is_valid_but_signer_not_on_trust_list(signed_ai):
    prov = provenance.read(signed_ai)
    assert prov.c2pa == provenance.UNTRUSTED
    cred = prov.credential
    assert cred.claim_generator.startswith("deepfake-lab-test 1.0")
    assert "Sample Signer" in cred.signer
    assert cred.actions[0]["action"] == "c2pa.created"
    assert cred.source_types == ["trainedAlgorithmicMedia"]
    assert prov.declares_ai and not prov.declares_capture
    assert "not on the trust list" in prov.summary()
    assert "no trust anchors" in prov.trust_list  # the library's default: said in the UI


def test_signed_jpeg_with_its_root_as_trust_anchor_is_trusted(chain, signed_ai):
    prov = provenance.read(signed_ai, trust_anchors=chain[2])
    assert prov.c2pa == provenance.TRUSTED and prov.credential.codes == []
    assert prov.trust_list == "trust anchors given by the caller"


def test_trust_anchors_from_the_environment(chain, signed_ai, tmp_path, monkeypatch):
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(chain[2])
    monkeypatch.setenv(provenance.TRUST_ENV, str(anchors))
    prov = provenance.read(signed_ai)
    assert prov.c2pa == provenance.TRUSTED and "anchors.pem" in prov.trust_list


def test_bytes_changed_after_signing_are_invalid_with_codes(signed_ai):
    prov = provenance.read(_tamper(signed_ai))
    assert prov.c2pa == provenance.INVALID
    assert "assertion.dataHash.mismatch" in prov.credential.codes
    assert "assertion.dataHash.mismatch" in prov.summary()
    assert not prov.declares_ai  # a tampered credential declares nothing that can be relied on


def test_ingredients_are_listed(chain):
    prov = provenance.read(_sign(chain, _jpeg(), AI_TYPE, ingredient=True))
    assert prov.credential.ingredients == ["parent.jpg (parentOf)"]
    assert "ingredients: parent.jpg" in prov.summary()


def test_plain_jpeg_has_no_provenance():
    prov = provenance.read(_jpeg())
    assert prov.c2pa == provenance.NONE and prov.findings == []
    assert prov.summary() == "no provenance metadata"


# --------------------------------------------------------------------------------------------
# XMP, PNG chunks, EXIF
# --------------------------------------------------------------------------------------------
def test_xmp_digital_source_type_declares_ai():
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
           b'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/'
           b'compositeWithTrainedAlgorithmicMedia" xmp:CreatorTool="Adobe Firefly"/></rdf:RDF></x:xmpmeta>')
    prov = provenance.read(_jpeg(xmp=xmp))
    assert any(f.source == "xmp" and "compositeWithTrainedAlgorithmicMedia" in f.text and f.declares == "ai"
               for f in prov.findings)
    assert any("Firefly" in f.text for f in prov.findings)
    assert provenance.reconcile(prov, REAL)[0] == provenance.DECLARED_AI


def test_png_automatic1111_parameters():
    prov = provenance.read(_png(parameters="a portrait\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, "
                                           "CFG scale: 7, Seed: 1, Size: 512x512, Model: sd15"))
    f = prov.findings[0]
    assert f.source == "png" and f.declares == "ai" and "AUTOMATIC1111" in f.text and "Steps: 20" in f.text


def test_png_comfyui_prompt_and_workflow():
    prompt = json.dumps({"3": {"class_type": "KSampler", "inputs": {}}, "4": {"class_type": "CheckpointLoaderSimple",
                                                                              "inputs": {}}})
    workflow = json.dumps({"nodes": [{"id": 3, "type": "KSampler"}], "links": []})
    prov = provenance.read(_png(prompt=prompt, workflow=workflow))
    texts = [f.text for f in prov.findings if f.declares == "ai"]
    assert any("ComfyUI prompt" in t and "KSampler" in t for t in texts)
    assert any("ComfyUI workflow" in t for t in texts)


def test_png_novelai_software_and_comment():
    prov = provenance.read(_png(Software="NovelAI", Comment=json.dumps({"prompt": "a cat", "steps": 28,
                                                                        "sampler": "k_euler", "seed": 1})))
    assert sum(f.declares == "ai" for f in prov.findings) == 2


def test_png_text_that_says_nothing_is_not_a_finding():
    assert provenance.read(_png(Software="GIMP 2.10", prompt="not json")).findings == []


def test_jpeg_exif_software_and_user_comment():
    exif = Image.Exif()
    exif[0x0131] = "Midjourney v6"
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + "Steps: 30, Sampler: DPM++ 2M, Seed: 5".encode("utf-16-be")
    prov = provenance.read(_jpeg(exif=exif.tobytes()))
    texts = {f.text: f.declares for f in prov.findings}
    assert texts["EXIF Software names a generator: Midjourney v6"] == "ai"
    assert texts["EXIF Make: Canon"] is None  # a camera make alone declares nothing
    assert any(t.startswith("EXIF UserComment holds generation parameters") for t in texts)


def test_editor_names_that_merely_resemble_generators_declare_nothing():
    for software in ("Imagenomic Portraiture 3", "Adobe Photoshop 25.0", "Runway Lightroom Preset"):
        exif = Image.Exif()
        exif[0x0131] = software
        prov = provenance.read(_jpeg(exif=exif.tobytes()))
        assert not prov.declares_ai, software
        assert provenance.reconcile(prov, FAKE)[0] == provenance.NO_CLAIM


def test_without_the_c2pa_sdk_a_credential_is_unreadable_and_a_plain_file_is_fine(signed_ai, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_c2pa(name, *args, **kwargs):
        if name == "c2pa":
            raise ImportError("no c2pa")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_c2pa)
    assert provenance.read(signed_ai).c2pa == provenance.UNREADABLE
    assert provenance.read(_jpeg()).findings == []


# --------------------------------------------------------------------------------------------
# Hostile blocks: a finding, never an exception; the batch goes on
# --------------------------------------------------------------------------------------------
def test_20mb_xmp_is_unreadable_and_the_image_still_decodes():
    data = _huge_xmp_jpeg(20)
    assert len(data) > 20 * 1024 ** 2
    prov = provenance.read(data)
    assert any(f.source == "xmp" and f.text.startswith("unreadable:") and "read limit" in f.text
               for f in prov.findings)
    assert images.decode_image(data).shape == (120, 160, 3)  # the image itself is still scored


def test_garbage_c2pa_box_is_unreadable(signed_ai):
    prov = provenance.read(_garbage_c2pa(signed_ai))
    assert prov.c2pa == provenance.UNREADABLE
    assert prov.findings[0].text.startswith("unreadable: ")
    assert provenance.reconcile(prov, FAKE)[0] == provenance.NO_CLAIM


def test_a_batch_of_hostile_files_goes_on(signed_ai):
    batch = [_garbage_c2pa(signed_ai), b"", b"not an image at all", _huge_xmp_jpeg(2), b"\x89PNG\r\n\x1a\n" + b"\xff" * 50,
             b"\xff\xd8\xff\xe1\xff\xff" + b"http://ns.adobe.com/xap/1.0/\x00", signed_ai]
    out = [provenance.read(d) for d in batch]
    assert out[-1].c2pa == provenance.UNTRUSTED  # the good file after the bad ones is still read


def test_oversized_png_text_chunk_is_unreadable():
    big = b"parameters\x00" + b"x" * (provenance.MAX_TEXT + 10)
    png = _png()
    chunk = struct.pack(">I", len(big)) + b"tEXt" + big + b"\x00\x00\x00\x00"
    data = png[:33] + chunk + png[33:]
    prov = provenance.read(data)
    assert any(f.text.startswith("unreadable: PNG text chunk") for f in prov.findings)


# --------------------------------------------------------------------------------------------
# Reconcile: one test per rule
# --------------------------------------------------------------------------------------------
def _prov(c2pa_state=provenance.NONE, *findings):
    return provenance.Provenance(c2pa=c2pa_state, findings=list(findings), trust_list="t")


def test_rule1_valid_credential_declaring_ai_wins_whatever_the_score(signed_ai):
    prov = provenance.read(signed_ai)
    for verdict in (REAL, FAKE, UNCERTAIN):
        code, text = provenance.reconcile(prov, verdict)
        assert code == provenance.DECLARED_AI and text.startswith("declared AI-generated")


def test_rule1_metadata_alone_declaring_ai_counts_too():
    prov = _prov(provenance.NONE, provenance.Finding("png", "PNG 'parameters' chunk", "ai"))
    assert provenance.reconcile(prov, REAL)[0] == provenance.DECLARED_AI


def test_rule2_valid_camera_credential_and_fake_score_is_a_conflict(signed_camera):
    prov = provenance.read(signed_camera)
    assert prov.declares_capture
    code, text = provenance.reconcile(prov, FAKE)
    assert code == provenance.CONFLICT and text.startswith("conflict: review")


def test_rule3_valid_camera_credential_and_real_score(signed_camera):
    code, text = provenance.reconcile(provenance.read(signed_camera), REAL)
    assert code == provenance.DECLARED_CAPTURE and "not on the trust list" in text


def test_rule4_absent_or_stripped_says_nothing_either_way():
    code, text = provenance.reconcile(provenance.read(_jpeg()), FAKE)
    assert code == provenance.NO_CLAIM
    assert "says nothing either way" in text and "strip metadata" in text


def test_rule4_invalid_camera_credential_is_no_claim_even_when_fake(signed_camera):
    code, text = provenance.reconcile(provenance.read(_tamper(signed_camera)), FAKE)
    assert code == provenance.NO_CLAIM and "tampered" in text


def test_exif_camera_make_is_not_a_capture_claim():
    prov = _prov(provenance.NONE, provenance.Finding("exif", "EXIF Make: Canon", None))
    assert provenance.reconcile(prov, FAKE)[0] == provenance.NO_CLAIM


# --------------------------------------------------------------------------------------------
# Custody
# --------------------------------------------------------------------------------------------
def test_custody_block_and_html_seal(tmp_path):
    b = custody.block(["no_such_model"], 0.5, 0.05)
    assert b["models"][0]["sha256"].startswith("unknown")
    assert b["threshold"] == 0.5 and b["band"] == 0.05 and b["created_utc"].endswith("+00:00")
    assert b["software"].startswith("deepfake-lab")
    sealed = custody.seal_html("<html><body>x</body></html>")
    assert custody.check_html_seal(sealed)
    assert not custody.check_html_seal(sealed.replace("x", "y", 1))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    assert custody.file_sha256(weights) == custody.sha256(b"abc")


# --------------------------------------------------------------------------------------------
# Stability
# --------------------------------------------------------------------------------------------
class BrightnessDetector:
    """P(fake) = how much fine detail a crop has (its mean absolute gradient), so a JPEG
    re-save or a down-and-up scale lowers it: a score that does not survive them."""
    name = "detail"

    def score_crops(self, crops):
        from detector.inference import BatchScores

        return BatchScores(np.array([min(1.0, float(np.abs(np.diff(c.astype(np.float32), axis=1)).mean()) / 40)
                                     for c in crops]))

    def analyze(self, rgb, *, regions, gradcam=False, threshold=None, band=0.0):
        p = self.score_crops([r.crop for r in regions]).p_fake
        return ImageResult([FaceResult(r, float(s), "n/a") for r, s in zip(regions, p)], self.name, 0.5, 0.01)


def test_stability_flags_a_verdict_that_crosses_the_threshold(monkeypatch):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)  # all fine detail: blurs away
    monkeypatch.setattr(report.faces_mod, "find_faces",
                        lambda img: [faces.FaceRegion((20, 20, 120, 120), (30, 30, 100, 100), 0.99, "face",
                                                      img[20:140, 20:140].copy())])
    s = report.score_image(rgb, [BrightnessDetector()], stable=True, name="noise.png")
    f = s.faces[0]
    assert set(f.stability) == set(stability.PERTURBATIONS)
    assert f.stability["scale0.5"] < f.p_fake
    threshold = (f.p_fake + f.stability["scale0.5"]) / 2
    assert stability.unstable(f.p_fake, f.stability, threshold)
    assert stability.text(f.p_fake, f.stability, threshold).startswith("UNSTABLE")
    assert not stability.unstable(f.p_fake, f.stability, 0.0)  # everything FAKE: stable
    assert evidence.unstable(s, threshold) is True
    assert report.results_frame([s], threshold).columns.tolist() == report.TABLE_COLUMNS  # no evidence yet
    evidence.attach(s, b"bytes")
    assert bool(report.results_frame([s], threshold).loc[0, "unstable"])


def test_shifted_crop_stays_inside_the_image():
    rgb = np.zeros((100, 100, 3), np.uint8)
    assert stability.shifted(rgb, (60, 60, 40, 40)).shape == (40, 40, 3)
    assert stability.shifted(rgb, (0, 0, 100, 100)).shape == (100, 100, 3)


# --------------------------------------------------------------------------------------------
# The panel in the table, the HTML report and the PDF
# --------------------------------------------------------------------------------------------
@pytest.fixture()
def scored(monkeypatch, signed_ai):
    rgb = images.decode_image(signed_ai)
    monkeypatch.setattr(report.faces_mod, "find_faces",
                        lambda img: [faces.FaceRegion((10, 10, 60, 60), (15, 15, 50, 50), 0.99, "face",
                                                      img[10:70, 10:70].copy())])

    class Low(BrightnessDetector):
        def score_crops(self, crops):
            from detector.inference import BatchScores
            return BatchScores(np.full(len(crops), 0.1))

    s = evidence.attach(report.score_image(rgb, [Low()], name="signed.jpg", stable=True), signed_ai)
    plain = evidence.attach(report.score_image(images.decode_image(_jpeg()), [Low()], name="plain.jpg"), _jpeg())
    return [s, plain, report.ImageError("bad.jpg", "not an image", sha256=custody.sha256(b"x"))]


def test_results_frame_gets_the_evidence_columns(scored, signed_ai):
    df = report.results_frame(scored, 0.5)
    for c in ("sha256", "provenance", "reconciled", "reconciled_text"):
        assert c in df.columns
    assert df["reconciled"].tolist() == ["declared_ai", "none", ""]
    assert df.loc[0, "sha256"] == custody.sha256(signed_ai)
    assert df.loc[2, "sha256"] == custody.sha256(b"x")
    assert "not on the trust list" in df.loc[0, "provenance"]
    assert df.loc[0, "reconciled_text"].startswith("declared AI-generated")


def test_headline_under_the_verdict_says_when_provenance_overrides_or_contradicts_it(monkeypatch, signed_ai,
                                                                                       signed_camera):
    """A signed AI file the model calls REAL: the line under its verdict warns that its metadata
    declares AI generation; called FAKE, the line only agrees (info); a plain file gets no line;
    a camera credential with a REAL verdict gets none, with a FAKE verdict a conflict warning."""
    monkeypatch.setattr(report.faces_mod, "find_faces",  # one judgeable 100-px face (MIN_FACE_SIDE 64)
                        lambda img: [faces.FaceRegion((10, 10, 100, 100), (20, 20, 80, 80), 0.99, "face",
                                                      img[10:110, 10:110].copy())])

    class Fixed(BrightnessDetector):
        def score_crops(self, crops):
            from detector.inference import BatchScores
            return BatchScores(np.full(len(crops), 0.4))

    def score(data: bytes, name: str):
        return evidence.attach(report.score_image(images.decode_image(data), [Fixed()], name=name), data)

    signed, plain, camera = score(signed_ai, "ai.jpg"), score(_jpeg(), "plain.jpg"), score(signed_camera, "cam.jpg")
    assert signed.verdict(0.5) == REAL and signed.verdict(0.3) == FAKE
    level, text = evidence.headline(signed, 0.5)
    assert level == "warning" and "declares it AI-generated" in text and f"({REAL})" in text
    level, text = evidence.headline(signed, 0.3)
    assert level == "info" and "also declares it AI-generated" in text
    assert evidence.headline(plain, 0.5) is None and evidence.headline(plain, 0.3) is None
    assert evidence.headline(camera, 0.5) is None  # REAL: the credential agrees
    level, text = evidence.headline(camera, 0.3)  # FAKE: the credential disagrees
    assert level == "warning" and "camera capture" in text and "FAKE" in text


def test_html_report_has_the_panel_custody_and_its_own_sha256(scored):
    block = custody.block(["no_such_model"], 0.5, 0.0, trust_list=provenance.trust_list_name())
    page = report.html_report(scored, 0.5, custody=block)
    assert "Reconciled: declared AI-generated" in page and "Reconciled: no claim either way" in page
    assert "Trust list: c2pa library defaults" in page
    assert "Chain of custody" in page and scored[0].sha256 in page
    assert "Stability" in page
    assert custody.check_html_seal(page)
    assert not custody.check_html_seal(page.replace("signed.jpg", "signed2.jpg", 1))


def test_pdf_report(scored):
    block = custody.block(["no_such_model"], 0.5, 0.0, trust_list=provenance.trust_list_name())
    pdf = pdf_report.pdf_report(scored, 0.5, custody=block)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert len(pdf) > 5000
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 4  # the summary page + one page per file


# --------------------------------------------------------------------------------------------
# The Detect page: the signed sample shows its evidence panel with the reconciled line
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_detect_page_shows_the_evidence_panel_of_the_signed_sample(monkeypatch):
    from conftest import open_page
    from detector import store

    if not store.model_names():
        pytest.skip("no shipped models")
    at = open_page("app/pages/detect.py", monkeypatch, timeout=300)
    at.multiselect(key="det_samples").set_value(["credential_capture.jpg", "astronaut.jpg"]).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("file")
    row = table.loc["sample: credential_capture.jpg"]
    assert row["reconciled"] in ("declared_capture", "conflict")
    assert "not on the trust list" in row["provenance"]
    assert len(row["sha256"]) == 64
    assert table.loc["sample: astronaut.jpg", "reconciled"] == "none"
    text = " ".join(m.value for m in at.markdown)
    assert "Reconciled: declared camera capture" in text or "Reconciled: conflict: review" in text
    assert "Reconciled: no claim either way" in text
    assert any("Trust list used: c2pa library defaults" in c.value for c in at.caption)
    # a conflict (camera credential, FAKE verdict) is said right under the verdict; agreement is not
    said = [w.value for w in at.warning if "camera capture" in w.value]
    assert len(said) == (row["reconciled"] == "conflict"), (row["reconciled"], said)
    assert at.toggle(key="det_stability").value is False  # off by default
    assert "unstable" not in table.columns
    # the stability check: each face's verdict with its perturbed scores, and the table column
    at.toggle(key="det_stability").set_value(True).run()
    assert not at.exception, at.exception
    assert "unstable" in at.dataframe[0].value.columns
    assert any(m.value.startswith("Face 1: ") and "jpeg70" in m.value and "shift" in m.value for m in at.markdown)


@pytest.mark.slow
def test_detect_page_goes_on_after_a_garbage_c2pa_box(monkeypatch, signed_ai):
    from conftest import open_page
    from detector import store

    if not store.model_names():
        pytest.skip("no shipped models")
    at = open_page("app/pages/detect.py", monkeypatch, timeout=300)
    at.file_uploader(key="det_upload").set_value([("garbage.jpg", _garbage_c2pa(signed_ai), "image/jpeg"),
                                                  ("plain.jpg", _jpeg(), "image/jpeg")]).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("file")
    assert table.loc["garbage.jpg", "provenance"].startswith("unreadable: ")
    assert table.loc["garbage.jpg", "verdict"] != "ERROR"  # the pixels are still scored
    assert table.loc["plain.jpg", "reconciled"] == "none"


@pytest.mark.slow
def test_predict_cli_writes_evidence_custody_columns_and_a_pdf(tmp_path, capfd):
    """The issue's 'done when': predict on the sample gallery with --csv and --pdf (shipped default model)."""
    import csv as csv_mod

    from detector import store
    from detector.__main__ import main

    if not store.model_names():
        pytest.skip("no shipped models")
    root = report.__file__.rsplit("/detector/", 1)[0] + "/sample_images"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out_csv, out_pdf = tmp_path / "x.csv", tmp_path / "x.pdf"
    files = [f"{root}/credential_capture.jpg", f"{root}/credential_ai_declared.jpg", f"{root}/astronaut.jpg", str(bad)]
    assert main(["predict", *files, "--csv", str(out_csv), "--pdf", str(out_pdf), "--stability"]) == 0
    capfd.readouterr()
    with open(out_csv, newline="") as fh:
        rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv_mod.DictReader(fh)}
    for col in ("sha256", "provenance", "reconciled", "reconciled_text", "unstable", "model_sha256", "software",
                "threshold", "band", "created_utc"):
        assert col in rows["astronaut.jpg"], col
    assert rows["credential_ai_declared.jpg"]["reconciled"] == "declared_ai"
    assert rows["credential_capture.jpg"]["reconciled"] in ("declared_capture", "conflict")
    assert rows["astronaut.jpg"]["reconciled"] == "none"
    assert rows["broken.jpg"]["sha256"] == custody.sha256(b"not an image") and rows["broken.jpg"]["error"]
    assert rows["astronaut.jpg"]["unstable"] in ("True", "False")
    assert len(rows["astronaut.jpg"]["model_sha256"].split("=")[1]) == 64
    pdf = out_pdf.read_bytes()
    assert pdf.startswith(b"%PDF-") and len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 5
