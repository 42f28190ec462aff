"""One labelling rule (`data.label_of`) for every reader of a labelled folder.

`python -m detector evaluate` (and training, the audit, the learning curve) read folders
through `data.scan`; the Compare page through `comparison.read_labelled_folder` or
`read_labelled_zip`; the Detect page's server folders through `inputs.list_folder`. Before
the rule had one owner, `data.scan` read only top-level, lower-case `real/` and `fake/`
(hidden files and `__MACOSX` included) while the Compare page took the deepest real/fake
folder of any case: one folder could be labelled two ways. The folder built here has each
case that used to differ, and every reader must label it the same way.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from detector import audit, comparison, data, images, inputs

# relative path -> the label every reader must give it (None: not labelled, not read)
LAYOUT = {
    "Real/r0.jpg": "real",                 # capitalised class folder
    "Real/r1.jpg": "real",
    "real/r2.jpg": "real",
    "x/fake/src/f0.jpg": "fake",           # nested class folder with a source below it
    "x/fake/src/f1.jpg": "fake",
    "fake/f2.jpg": "fake",
    "fake/real/r3.jpg": "real",            # the deepest class folder wins
    "Real/.hidden.jpg": None,              # hidden file
    ".cache/real/r4.jpg": None,            # inside a hidden folder
    "__MACOSX/Real/._r0.jpg": None,        # macOS resource fork
    "other/o0.jpg": None,                  # no class folder at all
}


def _picture(i: int) -> bytes:
    rng = np.random.default_rng(i)
    base = np.linspace(40, 200, 48 * 48 * 3).reshape(48, 48, 3) + rng.normal(0, 10, (48, 48, 3))
    return images.encode_jpeg(np.clip(base, 0, 255).astype(np.uint8), 90)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    for i, rel in enumerate(LAYOUT):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_picture(i))
    return root


def expected() -> dict[str, str]:
    return {rel: label for rel, label in LAYOUT.items() if label is not None}


def test_the_rule_itself():
    for rel, label in LAYOUT.items():
        found = data.label_of(rel)
        assert (found[0] if found else None) == label, rel
    assert data.label_of("x/fake/src/f0.jpg") == ("fake", "src")
    assert data.label_of("x\\FAKE\\a.jpg") == ("fake", "")
    assert data.is_junk("__MACOSX/a.jpg") and data.is_junk("a/.b/c.jpg") and not data.is_junk("a/b.jpg")


def test_scan_labels_as_the_rule(folder):
    """What `evaluate`, training, the audit and the learning curve read."""
    for confine in (False, True):
        frame = data.scan(folder, confine=confine)
        got = {rel: data.CLASS_NAMES[label] for rel, label in zip(frame["rel"], frame["label"])}
        assert got == expected()
        assert list(frame["label"]) == sorted(frame["label"])  # reals first, as before


def test_compare_folder_and_zip_label_as_the_rule(folder):
    from_folder = comparison.read_labelled_folder(folder)
    assert {i.name: i.label for i in from_folder} == expected()
    assert all(i.ok for i in from_folder)
    assert {i.name: i.source for i in from_folder}["x/fake/src/f0.jpg"] == "src"

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rel in LAYOUT:
            z.writestr(rel, (folder / rel).read_bytes())
    from_zip = comparison.read_labelled_zip(buf.getvalue())
    assert {i.name: i.label for i in from_zip} == expected()


def test_detect_page_listing_and_audit_label_as_the_rule(folder):
    listing = inputs.list_folder(folder)
    assert dict(zip(listing.files, listing.labels)) == {**{r: "" for r in ("other/o0.jpg",)}, **expected()}

    report = audit.audit(folder, progress=False)
    want = expected()
    counts = report["counts"]["total"]
    assert counts["real"] == sum(v == "real" for v in want.values())
    assert counts["fake"] == sum(v == "fake" for v in want.values())
