"""#27 item 6 in a real browser (`streamlit run` + Debian chromium, as tests/test_browser.py):
the Detect page's server-folder box against traversal and symlink escape, and hostile file
names and EXIF text (no request leaves the server's host, no link, no remote image, no badge
drawn from a name). The server runs the tiny model of conftest.py with one data root.

AppTest covers every folder box (tests/test_folder_boxes.py) and the Markdown of every page
(tests/test_injection.py, tests/test_evidence_text.py); this checks what chromium really
renders and fetches. Skipped without playwright or /usr/bin/chromium (fails under CI)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import test_browser as tb
from test_evidence_text import LINK, URL, _jpeg_with_exif
from test_injection import BADGE, BEACON, _png

from conftest import fake_image, smooth_image
from detector import roots, textsafe

pytestmark = pytest.mark.slow
browser, page = tb.browser, tb.page  # the browser module's fixtures, used here too
_no_exception, _open, _settle, _shot = tb._no_exception, tb._open, tb._settle, tb._shot

BOX = "Or analyse images in a folder on the server"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> tuple[Path, Path]:
    """(the data root, a secret folder beside it). The root holds inside/real/a.png and
    inside/real/link.png -> the secret image, and out -> the secret folder."""
    base = tmp_path_factory.mktemp("browser_roots")
    root, secret = base / "root", base / "secret"
    (root / "inside" / "real").mkdir(parents=True)
    secret.mkdir()
    rng = np.random.default_rng(5)
    (secret / "secret.png").write_bytes(_png(smooth_image(rng, 64)))
    (root / "inside" / "real" / "a.png").write_bytes(_png(smooth_image(rng, 64)))
    (root / "inside" / "real" / "link.png").symlink_to(secret / "secret.png")
    (root / "out").symlink_to(secret, target_is_directory=True)
    return root, secret


@pytest.fixture(scope="module")
def server(tiny_run, data_root, tmp_path_factory) -> str:
    models = tmp_path_factory.mktemp("browser_security_models")
    shutil.copytree(tiny_run, models / "tiny", ignore=shutil.ignore_patterns("logs", "checkpoints"))
    (models / "DEFAULT").write_text("tiny\n")
    old = os.environ.get(roots.ENV)
    os.environ[roots.ENV] = str(data_root[0])  # read by the server process at start
    try:
        with tb._streamlit(models, tmp_path_factory.mktemp("streamlit") / "server.log") as url:
            yield url
    finally:
        if old is None:
            os.environ.pop(roots.ENV, None)
        else:
            os.environ[roots.ENV] = old


def _type_folder(pg, text: str) -> None:
    box = pg.get_by_role("textbox", name=BOX)
    box.fill(text)
    box.press("Enter")
    _settle(pg)
    _no_exception(pg)


def test_server_folder_box_refuses_traversal_and_symlinks_in_a_browser(server, page, data_root):
    root, secret = data_root
    _open(page, server + "/", "Detect deepfakes")
    for hostile in ("/etc", str(secret), "../secret", str(root / ".." / "secret"), str(root / "out"),
                    str(root / "missing"), "~"):
        _type_folder(page, hostile)
        assert page.get_by_text(roots.REFUSED, exact=True).count() == 1, hostile
        assert page.get_by_text(re.compile(r"image\(s\) listed")).count() == 0, hostile
        assert page.get_by_text("secret.png").count() == 0, hostile
    # inside the root: listed; the link inside it that leads out is named with the reason, never read
    _type_folder(page, str(root / "inside"))
    assert page.get_by_text(roots.REFUSED, exact=True).count() == 0
    page.get_by_text(re.compile(r"2 image\(s\) listed")).wait_for()
    page.get_by_text("All 2", exact=True).click()
    _settle(page)
    _no_exception(page)
    page.get_by_text(re.compile(r"link\.png could not be analysed: a link to a file outside this folder")).wait_for()
    page.get_by_role("heading", name="inside/real/a.png", exact=True).wait_for()
    _shot(page, "security_folder_box")


def test_hostile_names_and_exif_fetch_nothing_and_draw_no_badge(server, page):
    """Upload names holding a remote-image beacon, a badge directive and a link, and EXIF
    text holding a link and a bare URL: every request the page makes stays on the server's
    host, no <img> or <a> points at the hostile hosts, and the names show as text."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    _open(page, server + "/", "Detect deepfakes")
    rng = np.random.default_rng(7)
    files = [{"name": f"{BEACON}.png", "mimeType": "image/png", "buffer": _png(smooth_image(rng, 96))},
             {"name": f"{BADGE}_face.png", "mimeType": "image/png", "buffer": _png(fake_image(rng, 96))},
             {"name": f"{LINK}.jpg", "mimeType": "image/jpeg",
              "buffer": _jpeg_with_exif(f"Stable Diffusion {LINK} {BEACON}", "", f"{URL} {BADGE}", seed=8)}]
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(files)
    page.get_by_text("Evidence: model, Content Credentials, metadata").first.wait_for()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stExpander\"]').length >= 3",
                           timeout=240_000)
    _settle(page)
    _no_exception(page)
    host = urlparse(server).hostname
    outside = [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
               and urlparse(u).hostname not in (host, "localhost")]
    assert [u for u in outside if "example" in u] == [], outside
    assert page.locator('img[src*="example.com"], img[src*="evil.example"]').count() == 0
    assert page.locator('a[href*="evil.example"], a[href*="example.com"]').count() == 0
    text = page.locator('[data-testid="stMain"]').inner_text().replace(textsafe.JOINER, "")  # invisible
    assert BADGE in text  # the directive shown as the characters of the name, not drawn
    assert f"EXIF Software: {URL} {BADGE}" in text  # the evidence panel, as text
    assert "VERIFIED" not in text
    _shot(page, "security_hostile_names")
