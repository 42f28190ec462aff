"""detector.report with stand-in detectors and face finder (no TensorFlow, no MTCNN)."""
from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from detector import faces, inference, novelty, report
from detector.inference import CANNOT_JUDGE, MIN_FACE_SIDE, NO_FACE, FaceResult, ImageResult


class StubDetector:
    """Scores each region with a fixed list of P(fake); a heatmap when asked."""

    def __init__(self, name, scores, routes=None, novelties=None):
        self.name, self.scores, self.calls = name, scores, []
        self.routes = routes or [None] * len(scores)
        self.novelties = novelties or [None] * len(scores)

    def analyze(self, rgb, *, regions, gradcam=False, threshold=None, band=0.0):
        self.calls.append(gradcam)
        out = [FaceResult(r, p, "n/a", np.full((4, 4), 0.5, np.float32) if gradcam else None, route, nov)
               for r, p, route, nov in zip(regions, self.scores, self.routes, self.novelties)]
        return ImageResult(out, self.name, 0.5, 0.01)


@pytest.fixture()
def two_faces(monkeypatch):
    rgb = np.full((1200, 1600, 3), 90, np.uint8)

    def find(img):
        return [faces.FaceRegion((100, 200, 300, 300), (130, 230, 240, 240), 0.99, "face",
                                 img[200:500, 100:400].copy()),
                faces.FaceRegion((900, 300, 400, 400), (940, 340, 320, 320), 0.98, "face",
                                 img[300:700, 900:1300].copy())]

    monkeypatch.setattr(report.faces_mod, "find_faces", find)
    return rgb


def test_score_image_averages_models_and_keeps_one_heatmap(two_faces):
    a, b = StubDetector("a", [0.2, 0.9]), StubDetector("b", [0.4, 0.5])
    s = report.score_image(two_faces, [a, b], gradcam=True, name="group.jpg", digest="abc")
    assert a.calls == [True] and b.calls == [False]
    assert [f.scores for f in s.faces] == [{"a": 0.2, "b": 0.4}, {"a": 0.9, "b": 0.5}]
    assert s.faces[0].p_fake == pytest.approx(0.3) and s.p_fake == pytest.approx(0.7)
    assert s.model_label == "ensemble(a+b)" and s.size == (1600, 1200)
    assert max(s.preview.shape[:2]) == report.PREVIEW_SIDE
    assert max(s.faces[1].crop.shape[:2]) <= report.CROP_SIDE
    assert s.faces[0].heatmap is not None and s.note is None and not s.no_face
    assert s.verdicts(0.5) == ["REAL", "FAKE"]
    assert s.verdicts(0.65, band=0.1) == ["REAL", "UNCERTAIN"]
    assert s.verdict(0.75) == "REAL"


def test_annotate_draws_boxes_in_verdict_colours(two_faces):
    s = report.score_image(two_faces, [StubDetector("m", [0.1, 0.95])])
    img = report.annotate(s, 0.5)
    assert img.shape == s.preview.shape
    x, y = round(900 * s.scale), round(450 * s.scale)  # left edge of the second (fake) box
    assert tuple(img[y, x]) == report.VERDICT_COLOURS["FAKE"]
    x, y = round(100 * s.scale), round(400 * s.scale)
    assert tuple(img[y, x]) == report.VERDICT_COLOURS["REAL"]


def test_no_face_note(monkeypatch):
    rgb = np.zeros((50, 60, 3), np.uint8)
    monkeypatch.setattr(report.faces_mod, "find_faces", lambda img: [faces.whole_image_region(img, "no_face")])
    s = report.score_image(rgb, [StubDetector("m", [0.3])])
    assert s.no_face and s.note == report.NO_FACE_NOTE
    assert report.results_frame([s], 0.5).loc[0, "faces"] == 0


def test_results_frame_and_html_report(two_faces):
    s = report.score_image(two_faces, [StubDetector("m", [0.1, 0.95])], gradcam=True, name="<b>x</b>.jpg")
    bad = report.ImageError("bad.png", "not an image file", "m")
    df = report.results_frame([s, bad], 0.5, 0.05)
    assert list(df.columns) == report.TABLE_COLUMNS
    assert df.loc[0, "verdict"] == "FAKE" and df.loc[0, "faces"] == 2 and df.loc[0, "p_fake"] == 0.95
    assert df.loc[1, "verdict"] == "ERROR" and df.loc[1, "error"] == "not an image file"
    assert pd.isna(df.loc[1, "faces"]) and pd.isna(df.loc[1, "p_fake"])
    faces_df = report.faces_frame(s, 0.5)
    assert list(faces_df["verdict"]) == ["REAL", "FAKE"]

    page = report.html_report([s, bad], 0.5, 0.05)
    assert "<b>x</b>.jpg" not in page and "&lt;b&gt;x&lt;/b&gt;.jpg" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    imgs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(imgs) == 1 + 2 * 2  # annotated image + (crop, heatmap) per face
    assert base64.b64decode(imgs[0])[:3] == b"\xff\xd8\xff"
    assert "not an image file" in page and "&lt;NA&gt;" not in page and "NaN" not in page


def test_a_failed_image_is_an_explicit_error_variant(two_faces):
    """A file that could not be analysed is an `ImageError` (the same class through report and
    inference), its model and SHA-256 carried into the table; a bare dict is no result."""
    assert report.ImageError is inference.ImageError
    s = report.score_image(two_faces, [StubDetector("m", [0.1, 0.95])], name="x.jpg")
    from detector import evidence, images
    evidence.attach(s, images.encode_jpeg(two_faces))  # provenance read: the evidence columns appear
    bad = report.ImageError("bad.png", "not an image file", "m", sha256="ab" * 32)
    df = report.results_frame([s, bad], 0.5)
    assert df.loc[1, ["file", "verdict", "model", "error", "sha256"]].tolist() == [
        "bad.png", "ERROR", "m", "not an image file", "ab" * 32]
    with pytest.raises(AttributeError):
        report.results_frame([{"file": "bad.png", "error": "not an image file"}], 0.5)


def test_an_experts_model_says_which_expert_judged(two_faces):
    routes = [{"openforensics": 0.9, "ffhq_stylegan": 0.1}, {"openforensics": 0.02, "ffhq_stylegan": 0.98}]
    s = report.score_image(two_faces, [StubDetector("experts", [0.1, 0.95], routes), StubDetector("m", [0.2, 0.5])])
    assert [f.route for f in s.faces] == routes  # the first model's router
    df = report.results_frame([s, report.ImageError("bad.png", "not an image file")], 0.5)
    assert list(df.columns) == ["file", "faces", "p_fake", "verdict", "model", "expert", "ms", "error"]
    assert df.loc[0, "expert"] == "ffhq_stylegan (98%)" and df.loc[1, "expert"] == ""  # the most fake face's
    assert list(report.faces_frame(s, 0.5)["expert"]) == ["openforensics (90%)", "ffhq_stylegan (98%)"]
    assert s.faces[1].expert == "judged by the ffhq_stylegan expert (router 98%)"
    page = report.html_report([s], 0.5)
    assert "judged by the openforensics expert (router 90%)" in page and "ffhq_stylegan expert (router 98%)" in page
    plain = report.score_image(two_faces, [StubDetector("m", [0.1, 0.95])])
    assert "expert" not in report.faces_frame(plain, 0.5) and plain.faces[0].expert == ""
    assert "judged by" not in report.html_report([plain], 0.5)


def test_a_face_unlike_the_training_faces_is_flagged_in_table_faces_and_report(two_faces):
    first = StubDetector("m", [0.1, 0.95], novelties=[2.5, 0.4])  # the REAL face is the unfamiliar one
    s = report.score_image(two_faces, [first, StubDetector("other", [0.2, 0.5], novelties=[0.1, 0.1])])
    assert [f.novelty for f in s.faces] == [2.5, 0.4] and [f.unfamiliar for f in s.faces] == [True, False]
    familiar = report.score_image(two_faces, [StubDetector("m", [0.1, 0.95], novelties=[0.9, 1.0])])
    df = report.results_frame([s, familiar, report.ImageError("bad.png", "not an image file")], 0.5)
    assert list(df.columns) == ["file", "faces", "p_fake", "verdict", "unfamiliar", "model", "ms", "error"]
    # any unfamiliar face flags its image, even when the verdict comes from another face
    assert df["unfamiliar"].tolist()[:2] == [True, False] and pd.isna(df.loc[2, "unfamiliar"])
    assert list(report.faces_frame(s, 0.5)["novelty"]) == [2.5, 0.4]
    # the unfamiliar face gets no verdict (CANNOT JUDGE, with the reason), the image's verdict is its other face's
    assert s.verdicts(0.5) == [CANNOT_JUDGE, "FAKE"] and s.verdict(0.5) == "FAKE"
    page = report.html_report([s], 0.5)
    assert page.count("the face is unlike the faces the model was trained on (novelty 2.50") == 1
    assert "the face is unlike the faces" not in report.html_report([familiar], 0.5)
    assert report.familiarity_text(None) == report.familiarity_text(1.0) == ""
    plain = report.score_image(two_faces, [StubDetector("m", [0.1, 0.95])])
    assert "unfamiliar" not in report.results_frame([plain], 0.5) and "novelty" not in report.faces_frame(plain, 0.5)


def test_familiarity_summary_reads_the_card():
    kept = {"novelty": {"usable": True, "n_train": 9200, "layers": ["a", "b"], "quantile": 0.99,
                        "test_unfamiliar": 0.0136, "check": {"blurred_unfamiliar": 0.984, "noise_unfamiliar": 1.0}}}
    assert report.familiarity_summary(kept) == (
        "Unfamiliar-face flag: fitted on 9200 training images (a, b); limit = the 99% point of val distances; "
        "1.4% of test faces flagged; check images flagged: blurred 98%, noise 100%.")
    dropped = {"novelty": {"usable": False, "why_not": "its features do not tell blurred images from training faces"}}
    assert report.familiarity_summary(dropped) == ("No unfamiliar-face flag: its features do not tell blurred "
                                                   "images from training faces.")
    assert report.familiarity_summary({}) == ""


def test_probes_summary_names_each_probed_source_with_its_val_gain():
    card = {"training": {"probes": {"ffhq_stylegan": {
        "layers": ["block3_project_bn", "block8_project_bn"], "views": ["whole", "mosaic"],
        "val_auc_branch": 0.931, "val_auc_blend": 0.945}}}}
    line = report.probes_summary(card)
    assert "ffhq_stylegan" in line and "block3_project_bn, block8_project_bn (whole and mosaic views)" in line
    assert "0.931 -> 0.945" in line
    assert report.probes_summary({"training": {}}) == "" and report.probes_summary({}) == ""


# --- NO FACE / CANNOT JUDGE -------------------------------------------------------------------

def test_cannot_judge_rule_and_its_thresholds():
    big = (0, 0, MIN_FACE_SIDE, MIN_FACE_SIDE + 40)
    assert inference.cannot_judge("face", big) is None and inference.cannot_judge("face_crop", big) is None
    verdict, why = inference.cannot_judge("no_face", (0, 0, 900, 600))
    assert verdict == NO_FACE and "no face" in why
    # the short side decides, one pixel under the limit is refused
    small = (5, 5, MIN_FACE_SIDE - 1, MIN_FACE_SIDE + 40)
    verdict, why = inference.cannot_judge("face", small)
    assert verdict == CANNOT_JUDGE and f"{MIN_FACE_SIDE - 1} px" in why
    assert inference.cannot_judge("face_crop", (0, 0, MIN_FACE_SIDE + 40, MIN_FACE_SIDE - 1))[0] == CANNOT_JUDGE
    # novelty: at the limit still judged, above it refused; no reference (None) never refuses
    assert inference.cannot_judge("face", big, novelty.LIMIT) is None
    verdict, why = inference.cannot_judge("face", big, novelty.LIMIT + 0.01)
    assert verdict == CANNOT_JUDGE and "unlike the faces" in why
    assert inference.cannot_judge("face", big, None) is None
    # no face comes first, then the size
    assert inference.cannot_judge("no_face", (0, 0, 10, 10), 9.0)[0] == NO_FACE
    assert "px" in inference.cannot_judge("face", small, 9.0)[1]
    assert inference.judged_verdict(0.99, 0.5, 0.0, "no_face", big) == NO_FACE
    assert inference.judged_verdict(0.99, 0.5, 0.0, "face", big) == "FAKE"


def test_an_image_without_a_face_gets_no_face_not_a_verdict(monkeypatch):
    rgb = np.full((300, 450, 3), 120, np.uint8)
    monkeypatch.setattr(report.faces_mod, "find_faces", lambda img: [faces.whole_image_region(img, "no_face")])
    cat = report.score_image(rgb, [StubDetector("m", [0.92])], name="cat.jpg")
    assert cat.verdict(0.5) == NO_FACE and not cat.judged and "no face" in cat.reason
    assert cat.p_fake == pytest.approx(0.92)  # the score is kept, on demand
    df = report.results_frame([cat], 0.5, labels=["fake"])
    assert df.loc[0, "verdict"] == NO_FACE and "no face" in df.loc[0, "reason"] and df.loc[0, "p_fake"] == 0.92
    assert pd.isna(df.loc[0, "correct"])  # never right or wrong
    acc = report.label_accuracy(df)
    assert acc["decided"] == 0 and acc["not_judged"] == 1
    assert pd.isna(report.readable_frame(df).loc[0, "p_fake"])  # no score beside it in the table people read
    page = report.html_report([cat], 0.5)
    assert f">{NO_FACE}</span>" in page and "score 0.920, not a verdict" in page
    assert ">FAKE<" not in page and "P(fake) 0.920" not in page
    img = report.annotate(cat, 0.5)
    assert tuple(img[cat.preview.shape[0] // 2, 0]) == report.VERDICT_COLOURS[NO_FACE]


def test_a_face_too_small_is_not_judged_and_the_image_rests_on_its_other_faces(monkeypatch):
    rgb = np.full((600, 800, 3), 90, np.uint8)
    side = MIN_FACE_SIDE - 4

    def find(img):
        return [faces.FaceRegion((10, 10, side, side), (12, 12, side - 4, side - 4), 0.99, "face",
                                 img[10:10 + side, 10:10 + side].copy()),
                faces.FaceRegion((300, 100, 200, 200), (320, 120, 160, 160), 0.99, "face",
                                 img[100:300, 300:500].copy())]

    monkeypatch.setattr(report.faces_mod, "find_faces", find)
    s = report.score_image(rgb, [StubDetector("m", [0.97, 0.2])])
    assert s.verdicts(0.5) == [CANNOT_JUDGE, "REAL"]
    assert s.verdict(0.5) == "REAL" and s.p_fake == pytest.approx(0.2) and s.reason == ""
    # all faces too small: the image cannot be judged, and is counted in neither REAL nor FAKE
    monkeypatch.setattr(report.faces_mod, "find_faces", lambda img: find(img)[:1])
    only_small = report.score_image(rgb, [StubDetector("m", [0.97])])
    df = report.results_frame([s, only_small], 0.5)
    assert list(df["verdict"]) == ["REAL", CANNOT_JUDGE]
    assert df.loc[0, "reason"] == "" and f"{side} px" in df.loc[1, "reason"]


def test_readable_table_marks_wrong_rows_and_the_report_carries_the_coverage_line(two_faces):
    fake = report.score_image(two_faces, [StubDetector("m", [0.1, 0.95])], name="a.jpg")
    real = report.score_image(two_faces, [StubDetector("m", [0.1, 0.2])], name="b.jpg")
    bad = report.ImageError("bad.png", "not an image file", "m")
    labels = ["real", "real", ""]
    df = report.results_frame([fake, real, bad], 0.5, labels=labels)
    shown = report.readable_frame(df)
    assert list(shown["correct"]) == ["wrong", "right", ""]
    assert shown["ms"].dtype == "Int64"
    line = report.coverage_text({"coverage": {"trained_on": ["face swaps"]}})
    page = report.html_report([fake, real, bad], 0.5, labels=labels, coverage=line)
    assert page.count("<tr class='wrong'>") == 1 and re.search(r"<tr class='wrong'><td>a\.jpg</td>", page)
    assert page.count(html_escape(line)) == 3  # once on top, once beside each verdict
    assert "None" not in page and "False" not in page and "True" not in page and "nan" not in page.lower()
    assert "label real: <b>wrong</b>" in page and "label real: right" in page
    assert "What the columns mean" in page


def html_escape(text: str) -> str:
    import html

    return html.escape(text)
