"""Batch inputs of the Detect page: zips expanded in memory, a labelled server folder, the
results table's label/thumbnail columns; then the page itself (AppTest) with a zip and with
a folder gallery. Every image is generated here or taken from sample_images/ (no shared data).
"""
from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO_ROOT, fake_image, jpeg_bytes, smooth_image
from detector import inputs, report, significance

APP = str(REPO_ROOT / "streamlit_app.py")
VERDICTS = {"REAL", "FAKE", "UNCERTAIN", "NO FACE", "CANNOT JUDGE"}


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def _zip(files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for d in dirs:
            z.writestr(zipfile.ZipInfo(d), b"")  # a folder entry ("x/")
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pics() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    return {"real": jpeg_bytes(smooth_image(rng, 64)), "fake": _png(fake_image(rng, 64))}


# --- zips ----------------------------------------------------------------------------------

def test_good_zip_is_expanded_in_order_with_names_and_bytes(pics):
    blob = _zip({"a.jpg": pics["real"], "b.png": pics["fake"]})
    out = inputs.expand_zip("set.zip", blob)
    assert [(e.name, e.data, e.error, e.label) for e in out] == [
        ("set.zip/a.jpg", pics["real"], "", ""), ("set.zip/b.png", pics["fake"], "", "")]


def test_zip_with_a_non_image_nested_folders_and_junk(pics):
    blob = _zip({"photos/real/x.jpg": pics["real"], "photos/fake/deep/y.PNG": pics["fake"],
                 "photos/notes.txt": b"hello", "__MACOSX/photos/._x.jpg": b"junk", "photos/.DS_Store": b"junk",
                 ".hidden/z.jpg": pics["real"], "fake.jpg": b"not really a jpeg"},
                dirs=("photos/", "photos/real/"))
    out = {e.name: e for e in inputs.expand_zip("a.zip", blob)}
    # folders, __MACOSX, dot-files and dot-folders are skipped without a row
    assert list(out) == ["a.zip/photos/real/x.jpg", "a.zip/photos/fake/deep/y.PNG", "a.zip/photos/notes.txt",
                         "a.zip/fake.jpg"]
    assert out["a.zip/photos/real/x.jpg"].label == "real" and out["a.zip/photos/real/x.jpg"].data == pics["real"]
    assert out["a.zip/photos/fake/deep/y.PNG"].label == "fake"
    txt = out["a.zip/photos/notes.txt"]
    assert txt.data is None and "not an image file (.txt)" in txt.error
    # an image-named file is passed on: the decoder judges its content (and has no label: not in a folder)
    assert out["a.zip/fake.jpg"].data == b"not really a jpeg" and out["a.zip/fake.jpg"].label == ""


def test_corrupt_zip_is_one_error_row(pics):
    blob = _zip({"a.jpg": pics["real"]})
    for bad in (b"PK\x03\x04 this is no zip", blob[: len(blob) // 2], b""):
        out = inputs.expand_zip("broken.zip", bad)
        assert len(out) == 1 and out[0].name == "broken.zip" and out[0].data is None
        assert "not a readable zip file" in out[0].error


def test_corrupt_member_gets_its_own_row(pics):
    blob = bytearray(_zip({"a.jpg": pics["real"] * 4, "b.jpg": pics["fake"]}))
    start = blob.index(b"a.jpg") + len("a.jpg")  # inside a.jpg's compressed data
    blob[start + 20:start + 60] = bytes(40)
    out = inputs.expand_zip("z.zip", bytes(blob))
    assert [e.name for e in out] == ["z.zip/a.jpg", "z.zip/b.jpg"]
    assert out[0].data is None and "cannot read it from the zip" in out[0].error
    assert out[1].data == pics["fake"]


def test_too_many_members_are_capped_with_a_note(pics):
    blob = _zip({f"img_{i:02d}.jpg": pics["real"] for i in range(7)})
    out = inputs.expand_zip("many.zip", blob, max_members=5)
    assert [e.name for e in out[:5]] == [f"many.zip/img_{i:02d}.jpg" for i in range(5)]
    assert all(e.data == pics["real"] for e in out[:5])
    assert len(out) == 6 and out[5].name == "many.zip" and out[5].data is None
    assert "holds 7 files: only the first 5 were read (2 left out)" in out[5].error
    assert inputs.MAX_MEMBERS == 500


def test_size_caps_per_member_and_in_total():
    big = bytes(2000)  # compresses to almost nothing: a small zip-bomb
    blob = _zip({"a.jpg": big, "b.jpg": big, "c.jpg": b"x" * 10})
    out = inputs.expand_zip("bomb.zip", blob, max_member_bytes=1000)
    assert [e.data is None for e in out] == [True, True, False]
    assert "file too large" in out[0].error
    out = inputs.expand_zip("bomb.zip", blob, max_total_bytes=3000)
    assert out[0].data == big and out[1].data is None and "more than" in out[1].error
    assert out[2].data == b"x" * 10
    # a member whose header under-states its size is still cut at the limit
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("liar.jpg", bytes(5000))
    raw = bytearray(buf.getvalue())
    cd = raw.index(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = (10).to_bytes(4, "little")  # central directory: uncompressed size 10
    out = inputs.expand_zip("liar.zip", bytes(raw), max_member_bytes=1000)
    assert out[0].data is None and ("too large" in out[0].error or "cannot read" in out[0].error)


def test_expand_passes_plain_files_on_and_empty_zip_says_so(pics):
    out = inputs.expand([("a.jpg", pics["real"]), ("B.ZIP", _zip({"c.png": pics["fake"]})),
                         ("empty.zip", _zip({}, dirs=("x/",)))])
    assert [(e.name, e.data is not None) for e in out] == [("a.jpg", True), ("B.ZIP/c.png", True),
                                                           ("empty.zip", False)]
    assert "no files" in out[2].error


# --- a folder on the server -------------------------------------------------------------------

@pytest.fixture()
def labelled_folder(tmp_path) -> Path:
    """real/ (2) and fake/ (2, one in a sub-folder) images, an unlabelled one, junk."""
    rng = np.random.default_rng(11)
    root = tmp_path / "set"
    for rel, make in (("real/r1.jpg", smooth_image), ("real/r2.png", smooth_image),
                      ("Fake/f1.jpg", fake_image), ("Fake/gan/f2.jpg", fake_image), ("other/u.jpg", smooth_image)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make(rng, 64)).save(root / rel)
    (root / "real" / "notes.txt").write_text("not an image")
    (root / ".thumbs").mkdir()
    (root / ".thumbs" / "t.jpg").write_bytes(b"junk")
    (root / "real" / "._r1.jpg").write_bytes(b"junk")
    return root


def test_folder_listing_with_labels(labelled_folder):
    listing = inputs.list_folder(str(labelled_folder))
    assert listing.files == ["Fake/f1.jpg", "Fake/gan/f2.jpg", "other/u.jpg", "real/r1.jpg", "real/r2.png"]
    assert listing.labels == ["fake", "fake", "", "real", "real"]
    assert listing.counts() == {"real": 2, "fake": 2, "unlabelled": 1} and not listing.truncated
    assert listing.found == listing.counts()
    capped = inputs.list_folder(labelled_folder, limit=3)  # one of each label, not the first three
    assert capped.files == ["Fake/f1.jpg", "other/u.jpg", "real/r1.jpg"] and capped.truncated
    assert capped.counts() == {"real": 1, "fake": 1, "unlabelled": 1} and capped.found == listing.found
    entries = inputs.read_folder(listing, ["real/r2.png", "Fake/gan/f2.jpg"])
    assert [(e.name, e.label) for e in entries] == [("set/real/r2.png", "real"), ("set/Fake/gan/f2.jpg", "fake")]
    assert entries[0].data == (labelled_folder / "real" / "r2.png").read_bytes()
    (labelled_folder / "real" / "r2.png").unlink()  # gone since the listing: an error entry
    gone = inputs.read_folder(listing, ["real/r2.png"])[0]
    assert gone.data is None and "cannot read file" in gone.error


def test_a_capped_folder_listing_is_a_balanced_deterministic_sample(tmp_path):
    """fake/ sorts before real/: the first files in order would all be fakes."""
    for label, n in (("fake", 90), ("real", 30)):
        (tmp_path / label).mkdir()
        for i in range(n):
            (tmp_path / label / f"{i:03d}.jpg").write_bytes(b"x")  # listing never decodes
    listing = inputs.list_folder(tmp_path, limit=40)
    assert listing.truncated and listing.counts() == {"real": 20, "fake": 20, "unlabelled": 0}
    assert listing.found == {"real": 30, "fake": 90, "unlabelled": 0}
    assert listing.files == sorted(listing.files) and len(set(listing.files)) == 40
    # spread through each label's files, first to last, and the same every time
    assert {"fake/000.jpg", "fake/089.jpg", "real/000.jpg", "real/029.jpg"} <= set(listing.files)
    assert inputs.list_folder(tmp_path, limit=40) == listing
    # a label with fewer files than its share gives the rest to the other
    few = inputs.list_folder(tmp_path, limit=100)
    assert few.counts() == {"real": 30, "fake": 70, "unlabelled": 0}


def test_sample_gallery_labels(tmp_path):
    assert inputs.sample_labels(tmp_path) == {}
    (tmp_path / "LABELS.csv").write_text("file,label\na.jpg,real\nb.jpg,FAKE\nc.jpg,\n")
    assert inputs.sample_labels(tmp_path) == {"a.jpg": "real", "b.jpg": "fake"}
    shipped = inputs.sample_labels(REPO_ROOT / "sample_images")
    assert shipped["astronaut.jpg"] == "real" and "fake" in shipped.values()
    assert all((REPO_ROOT / "sample_images" / name).is_file() for name in shipped)
    assert "chelsea_cat.jpg" not in shipped  # no face: nothing to be right about


def test_an_upload_that_is_not_an_image_is_listed_with_why():
    out = inputs.expand([("notes.txt", b"hello"), ("a.jpg", b"bytes")])
    assert out[0].data is None and "not an image file (.txt)" in out[0].error
    assert out[1].data == b"bytes"


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        inputs.list_folder(tmp_path / "nope")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        inputs.list_folder(tmp_path / "a.txt")
    with pytest.raises(ValueError, match="no image files"):
        inputs.list_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        inputs.list_folder("  ")


# --- the results table ------------------------------------------------------------------------

def test_results_frame_labels_correctness_and_thumbnails(monkeypatch):
    from detector import faces
    from detector.inference import FaceResult, ImageResult

    class Stub:
        def __init__(self, p):
            self.p = p

        def analyze(self, rgb, *, regions, gradcam=False):
            return ImageResult([FaceResult(r, self.p, "n/a", None) for r in regions], "m", 0.5, 0.01)

    # a face crop (judged whole): a region with no face would be NO FACE, never right or wrong
    monkeypatch.setattr(report.faces_mod, "find_faces", lambda img: [faces.whole_image_region(img, "face_crop")])
    rgb = smooth_image(np.random.default_rng(0), 200)
    scores = [report.score_image(rgb, [Stub(p)], name=f"{i}.jpg") for i, p in enumerate((0.9, 0.1, 0.9, 0.52))]
    bad = report.ImageError("bad.jpg", "not an image file", "m")
    df = report.results_frame([*scores, bad], 0.5, 0.05, labels=["fake", "fake", "", "real", "real"], thumbnails=True)
    assert list(df.columns) == ["thumbnail", "file", "label", "faces", "p_fake", "verdict", "correct", "model", "ms",
                                "error"]
    assert list(df["verdict"]) == ["FAKE", "REAL", "FAKE", "UNCERTAIN", "ERROR"]
    assert df["correct"].tolist()[:2] == [True, False] and df["correct"].isna().tolist()[2:] == [True] * 3
    assert df["thumbnail"].iloc[0].startswith("data:image/jpeg;base64,") and pd.isna(df["thumbnail"].iloc[4])
    thumb = Image.open(io.BytesIO(base64.b64decode(df["thumbnail"].iloc[0].split(",", 1)[1])))
    assert max(thumb.size) == report.TABLE_THUMB_SIDE
    acc = report.label_accuracy(df)
    lo, hi = acc.pop("accuracy_ci")  # 1 of 2: the interval spans most of [0, 1]
    assert acc == {"labelled": 4, "decided": 2, "correct": 1, "uncertain": 1, "not_judged": 0, "errors": 1,
                   "accuracy": 0.5}
    assert lo < 0.15 and hi > 0.85
    # without labels (or with none known) the table keeps its plain columns
    assert list(report.results_frame(scores, 0.5, labels=[""] * 4).columns) == report.TABLE_COLUMNS
    assert report.label_accuracy(report.results_frame(scores, 0.5)) is None
    assert "<td>fake</td>" in report.html_report(scores[:1], 0.5, labels=["fake"])


# --- the page ---------------------------------------------------------------------------------

@pytest.fixture()
def app(models_root, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DEEPFAKE_LAB_MODELS", str(models_root))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_detect_page_reads_a_zip(app, pics):
    face = (REPO_ROOT / "sample_images" / "astronaut.jpg").read_bytes()
    blob = _zip({"set/real/astronaut.jpg": face, "set/fake/noise.png": pics["fake"], "set/readme.txt": b"hi",
                 "__MACOSX/set/._astronaut.jpg": b"junk"}, dirs=("set/",))
    app.file_uploader[0].set_value([("set.zip", blob, "application/zip"),
                                    ("broken.zip", b"PK\x03\x04 nope", "application/zip")]).run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value.set_index("file")
    assert list(table.index) == ["set.zip/set/real/astronaut.jpg", "set.zip/set/fake/noise.png",
                                 "set.zip/set/readme.txt", "broken.zip"]
    assert set(table["verdict"][:2]) <= VERDICTS and list(table["faces"][:2]) == [1, 0]
    assert list(table["label"]) == ["real", "fake", "", ""]
    assert table["thumbnail"].iloc[0].startswith("data:image/jpeg;base64,")
    assert list(table["verdict"][2:]) == ["ERROR", "ERROR"]
    assert "not an image file (.txt)" in table.loc["set.zip/set/readme.txt", "error"]
    errors = [e.value.replace("\\", "") for e in app.error]  # the page escapes Markdown in names (#27)
    assert any("readme.txt" in e and "not an image file" in e for e in errors)
    assert any("broken.zip" in e and "not a readable zip file" in e for e in errors)
    assert any(c.value.startswith("Labelled images: 2.") for c in app.caption)
    counts = {m.label: int(m.value) for m in app.metric
              if m.label in ("Fake", "Uncertain", "Real", "Cannot judge", "Error")}
    assert counts["Error"] == 2 and sum(counts.values()) == 4
    assert table.loc["set.zip/set/fake/noise.png", "verdict"] == "NO FACE"  # no face: counted in neither
    assert counts["Cannot judge"] >= 1


@pytest.mark.slow
def test_detect_page_folder_gallery(app, labelled_folder, monkeypatch):
    from detector import roots

    monkeypatch.setenv("DEEPFAKE_LAB_ROOTS", str(labelled_folder.parent))  # off without data roots
    app.run()
    app.text_input(key="det_folder").set_value(str(labelled_folder / "missing")).run()
    assert any(e.value == roots.REFUSED for e in app.error)  # the one message for every refusal
    assert not app.dataframe

    empty = labelled_folder.parent / "empty"
    empty.mkdir()
    app.text_input(key="det_folder").set_value(str(empty)).run()
    assert any("no image files" in w.value for w in app.warning)

    app.text_input(key="det_folder").set_value(str(labelled_folder)).run()
    assert any("5 image(s) listed" in c.value and "2 real, 2 fake, 1 unlabelled" in c.value for c in app.caption)
    app.multiselect(key="det_folder_pick").set_value(["real/r1.jpg", "Fake/f1.jpg"]).run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    assert list(table["file"]) == ["set/real/r1.jpg", "set/Fake/f1.jpg"]
    assert list(table["label"]) == ["real", "fake"] and set(table["verdict"]) <= VERDICTS

    def expected(v, lab):
        return None if v not in ("REAL", "FAKE") else (v == "FAKE") == (lab == "fake")

    got = [None if c == "" else c == "right" for c in table["correct"]]  # shown as right / wrong
    assert got == [expected(v, lab) for v, lab in zip(table["verdict"], table["label"])]
    decided = [g for g in got if g is not None]
    caption = next(c.value for c in app.caption if c.value.startswith("Labelled images: 2."))
    assert f"Correct: {sum(decided)} of {len(decided)} REAL/FAKE verdicts" in caption
    if decided:  # two images: the caption says how little that measures
        lo, hi = significance.accuracy_interval(sum(decided), len(decided))
        assert f"95% interval {lo:.0%}-{hi:.0%}" in caption

    app.checkbox(key="det_folder_all").check().run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    assert len(table) == 5 and list(table["label"]) == ["fake", "fake", "", "real", "real"]


def test_read_folder_does_not_follow_a_link_out_of_the_folder(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.jpg").write_bytes(b"not yours")
    (tmp_path / "set" / "real").mkdir(parents=True)
    (tmp_path / "set" / "real" / "a.jpg").write_bytes(b"a picture")
    (tmp_path / "set" / "real" / "link.jpg").symlink_to(tmp_path / "outside" / "secret.jpg")
    listing = inputs.list_folder(tmp_path / "set")
    entries = {e.name: e for e in inputs.read_folder(listing, listing.files)}
    assert entries["set/real/a.jpg"].data == b"a picture"
    assert entries["set/real/link.jpg"].data is None and "outside this folder" in entries["set/real/link.jpg"].error
