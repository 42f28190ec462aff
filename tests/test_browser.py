"""The dashboard in a real browser: `streamlit run` + Debian chromium driven by playwright.

A module fixture starts `streamlit run streamlit_app.py` on a free port (waits for
/_stcore/health, stops it at the end); chromium is the system one (/usr/bin/chromium,
`apt-get install chromium`), launched by Python playwright with `executable_path`, so
`playwright install` (a browser download) is never needed. Each page is opened, used like
a person would, and screenshotted into test-artifacts/.

Without playwright or /usr/bin/chromium the module is skipped, unless the environment
variable CI is set: then it fails (CI must really run it).

Models: the shipped ones when models/ has any, otherwise the tiny run of conftest.py in a
temporary models folder (DEEPFAKE_LAB_MODELS).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO_ROOT, fake_image, smooth_image
from detector import store
from memory_soak import stop_server

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = pytest.mark.slow  # a real browser against a real server: the slow tier

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
VERDICT_RE = re.compile(r"\b(NO FACE|CANNOT JUDGE|REAL|FAKE|UNCERTAIN)\b")
BADGE_RE = re.compile("NO FACE|CANNOT JUDGE|REAL|FAKE|UNCERTAIN")  # playwright's has_text (its JS regexes ignore \b)
VERDICTS = {"REAL", "FAKE", "UNCERTAIN", "NO FACE", "CANNOT JUDGE"}
SLOW = 240_000  # ms: the first detection loads TensorFlow, the model and MTCNN on a busy CPU


def _missing() -> str | None:
    if sync_playwright is None:
        return "Python playwright is not installed (pip install -r requirements-dev.txt)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


MISSING = _missing()
if MISSING and not os.environ.get("CI"):
    pytest.skip(f"browser tests need playwright and Debian chromium: {MISSING}", allow_module_level=True)


# --- fixtures ------------------------------------------------------------------------------



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _streamlit(models_root: Path, log_path: Path):
    """`streamlit run` on a free port; yields its base URL, stops it after and checks its log."""
    port = _free_port()
    env = {**os.environ, "DEEPFAKE_LAB_MODELS": str(models_root), "TF_CPP_MIN_LOG_LEVEL": "2",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
                    if r.status == 200 and r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"streamlit not healthy after 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_server(proc)
    assert "Traceback" not in log_path.read_text(errors="replace"), log_path.read_text()[-3000:]


@pytest.fixture(scope="module")
def server(models_root, tmp_path_factory) -> str:
    """One server for the module's tests; yields its base URL."""
    with _streamlit(models_root, tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if MISSING:  # only reached when CI is set
        pytest.fail(f"CI is set, so the browser tests must run, but {MISSING}", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(SLOW)
    yield pg
    context.close()


@pytest.fixture(scope="module")
def upload_files(tmp_path_factory) -> list[Path]:
    """A PNG and a JPEG, generated (face-free gradients: judged whole)."""
    folder = tmp_path_factory.mktemp("uploads")
    rng = np.random.default_rng(3)
    png, jpg = folder / "gradient.png", folder / "checker.jpg"
    Image.fromarray(smooth_image(rng, 128)).save(png)
    Image.fromarray(fake_image(rng, 112)).save(jpg, quality=92)
    return [png, jpg]


# --- helpers -------------------------------------------------------------------------------

IDLE_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-testid="stSkeleton"]')
                 && !document.querySelector('[data-stale="true"]')"""


def _settle(page, timeout_s: float = SLOW / 1000) -> None:
    """Wait until the script run is over: no 'running' status, no skeletons, no stale
    elements, three checks in a row (a rerun can take a moment to start)."""
    deadline, calm = time.time() + timeout_s, 0
    while calm < 3:
        assert time.time() < deadline, "the page kept running"
        calm = calm + 1 if page.evaluate(IDLE_JS) else 0
        time.sleep(0.3)


def _open(page, url: str, title: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=title, exact=True).wait_for()
    _settle(page)
    _no_exception(page)


def _no_exception(page) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, shown.all_inner_texts()


def _shot(page, name: str) -> None:
    """A screenshot of the whole page (Streamlit scrolls inside its main block, so the
    viewport is stretched to the content's height first)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.evaluate("""() => Math.max(...Array.from(
        document.querySelectorAll('[data-testid="stMain"], [data-testid="stMainBlockContainer"]'),
        e => e.scrollHeight), document.body.scrollHeight)""")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
    time.sleep(1)  # charts re-layout to the new size
    _settle(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(size)


def _upload(page, files: list[Path]) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(f) for f in files])


def _verdict_of(page, name: str) -> str:
    """Wait for the result card of one file and return its verdict badge."""
    heading = page.get_by_role("heading", name=name, exact=True)
    heading.wait_for()
    header = page.locator('[data-testid="stHorizontalBlock"]').filter(has=heading).filter(has_text=BADGE_RE)
    header.first.wait_for()
    match = VERDICT_RE.search(header.first.inner_text())
    assert match, header.first.inner_text()
    return match.group(1)


# --- tests ---------------------------------------------------------------------------------

def _metrics(page) -> dict[str, int]:
    metrics = {}
    for text in page.locator('[data-testid="stMetric"]').all_inner_texts():
        lines = [t for t in text.splitlines() if t.strip()]
        if lines and lines[0] in ("Fake", "Uncertain", "Real", "Cannot judge", "Error"):
            metrics[lines[0]] = int(lines[-1])
    return metrics


def test_detect_page_gives_both_verdicts(server, page, upload_files):
    _open(page, server + "/", "Detect deepfakes")
    assert page.get_by_role("button", name="Deploy").count() == 0  # toolbarMode viewer: a clean demo
    # the uploader states the real limit (server.maxUploadSize), not Streamlit's default 200 MB
    assert page.get_by_text(re.compile(r"\b64\s?MB per file")).count() >= 1
    _upload(page, upload_files)
    verdicts = {f.name: _verdict_of(page, f.name) for f in upload_files}
    _settle(page)
    _no_exception(page)
    # face-free pictures: no REAL/FAKE verdict, the reason instead, and the score only on demand
    assert set(verdicts.values()) == {"NO FACE"}, verdicts
    assert page.get_by_text(re.compile(r"^P\(fake\) \d\.\d{3} · ")).count() == 0
    assert page.get_by_text(re.compile("No face found: the whole image was scored")).count() == len(upload_files)
    # the summary counts add up to the two images, none in error, neither counted as Real or Fake
    metrics = _metrics(page)
    assert sum(metrics.values()) == 2 and metrics["Error"] == 0 and metrics["Cannot judge"] == 2, metrics
    _shot(page, "detect")


def _pick_samples(page, names: list[str]) -> None:
    box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Or try sample images")
    for name in names:
        box.locator("input").first.click()
        page.get_by_role("option", name=re.compile("^" + re.escape(name))).first.click()
        page.keyboard.press("Escape")  # close the list: while open it hides the page from the accessibility tree
        _settle(page)


def test_sample_gallery_cat_and_cup_cannot_be_judged_and_a_shipped_fake_is_fake(server, page, models_root):
    """The demo of issue #24: the cat and the coffee cup read NO FACE (no red FAKE badge, not
    counted as Fake), a fake the project made from public-domain photos reads FAKE, marked right."""
    _open(page, server + "/", "Detect deepfakes")
    _pick_samples(page, ["chelsea_cat.jpg", "no_face_coffee.jpg", "fake_face_swap.jpg"])
    verdicts = {n: _verdict_of(page, f"sample: {n}") for n in ("chelsea_cat.jpg", "no_face_coffee.jpg",
                                                                 "fake_face_swap.jpg")}
    _settle(page)
    _no_exception(page)
    assert verdicts["chelsea_cat.jpg"] == verdicts["no_face_coffee.jpg"] == "NO FACE", verdicts
    metrics = _metrics(page)
    assert metrics["Cannot judge"] == 2, metrics
    # issue #23: what a verdict covers is said beside each image's verdict, not only in the sidebar
    assert page.get_by_text(re.compile(r"Trained on .*never saw")).count() >= 3
    if models_root == REPO_ROOT / "models" and store.default_model_name(models_root) == "efficientnet_lite0_experts":
        assert verdicts["fake_face_swap.jpg"] == "FAKE", verdicts  # the shipped default on the shipped fake
        assert metrics["Fake"] == 1, metrics
        assert page.get_by_text(re.compile(r"Label: fake.*right")).count() == 1
    else:
        assert verdicts["fake_face_swap.jpg"] in VERDICTS
    _shot(page, "detect_samples")


def _confusion_counts(page, model: str) -> tuple[str, list[int]]:
    """(title, [tn, fp, fn, tp]) read from the plotly confusion matrix of one model."""
    plot = page.locator(".js-plotly-plot").filter(has_text=re.compile(re.escape(model) + r"\s*at threshold")).first
    plot.wait_for()
    # the title: the model's name over "at threshold T" (lines of one svg text: joined without a space)
    title = next(" ".join(t.replace(model, model + " ").split()) for t in plot.locator("text").all_text_contents()
                 if t.startswith(model) and "at threshold" in t)
    cells = plot.locator("text[data-unformatted*='<br>']").evaluate_all(  # the cells ("count<br>rate"), not the title
        "els => els.filter(e => /^\\d+<br>/.test(e.getAttribute('data-unformatted')))"
        ".map(e => [Number(e.getAttribute('x')), Number(e.getAttribute('y')), e.getAttribute('data-unformatted')])")
    assert len(cells) == 4, cells
    cells.sort(key=lambda c: (c[1], c[0]))  # rows top (true real) to bottom, columns left to right
    return title, [int(c[2].split("<br>")[0]) for c in cells]


def test_compare_slider_moves_the_confusion_matrix(server, page, models_root):
    _open(page, server + "/compare", "Compare models")
    model = store.default_model_name(models_root)
    card = json.loads((models_root / model / "card.json").read_text())
    preds = pd.read_csv(models_root / model / "predictions.csv")
    test = preds[preds["split"].astype(str) == "test"]
    score = test["p_fake"].to_numpy(float)
    fake = test["label"].astype(str).str.lower().eq("fake").to_numpy()

    def by_hand(t: float) -> list[int]:
        pred = score >= t
        return [int((~fake & ~pred).sum()), int((~fake & pred).sum()), int((fake & ~pred).sum()),
                int((fake & pred).sum())]

    slider = page.locator(f'input[type="range"][aria-label="{model}"]')
    start = float(slider.get_attribute("value"))
    assert start == pytest.approx(card["threshold"], abs=0.0006)
    title0, counts0 = _confusion_counts(page, model)
    assert counts0 == by_hand(card["threshold"]), (title0, counts0)

    # arrow presses (0.001 each) that carry the threshold across the nearest test score
    above, below = score[score >= start], score[score < start]
    right = math.floor((above.min() - start) / 0.001) + 2 if above.size else 10**9
    left = math.floor((start - below.max()) / 0.001) + 2 if below.size else 10**9
    key, presses = ("ArrowRight", right) if right <= left else ("ArrowLeft", left)
    assert presses <= 1000, "no test score near the threshold"
    slider.focus()
    for _ in range(presses):
        page.keyboard.press(key)
    moved = float(slider.get_attribute("value"))
    assert moved != start
    page.locator(".js-plotly-plot").filter(
        has_text=re.compile(re.escape(model) + rf"\s*at threshold {moved:.3f}")).first.wait_for()
    _settle(page)
    title1, counts1 = _confusion_counts(page, model)
    assert title1 == f"{model} at threshold {moved:.3f}"
    assert counts1 != counts0 and sum(counts1) == sum(counts0) == len(test), (counts0, counts1)
    assert counts1 == by_hand(moved), (moved, counts1)
    _no_exception(page)
    _shot(page, "compare")


def test_compare_slider_moves_each_redraw_their_matrix(server, page, models_root):
    """Real browser, real server: six threshold key presses (one 0.001 step each, right and left)
    each redraw the moved model's confusion matrix titled with the new threshold, with the page
    idle again. The time from key press to that redraw is printed (issue #24 asks at most 0.5 s;
    a speed target is read from these printed numbers and docs/performance.md, not asserted,
    because a shared CI machine's load doubles it): `pytest tests/test_browser.py -k redraw -s`."""
    import statistics

    _open(page, server + "/compare", "Compare models")
    model = store.default_model_name(models_root)
    slider = page.locator(f'input[type="range"][aria-label="{model}"]')
    waits = []
    for i in range(6):
        key = "ArrowRight" if i % 2 == 0 else "ArrowLeft"
        before = float(slider.get_attribute("value"))
        target = round(before + (0.001 if key == "ArrowRight" else -0.001), 3)
        slider.focus()
        t0 = time.perf_counter()
        page.keyboard.press(key)
        page.wait_for_function(
            """([model, shown]) => {
                 const busy = document.querySelector('[data-testid="stStatusWidget"]')
                              || document.querySelector('[data-stale="true"]');
                 const titles = Array.from(document.querySelectorAll('.js-plotly-plot .gtitle'), e => e.textContent);
                 return !busy && titles.some(t => t.startsWith(model) && t.includes('at threshold ' + shown));
               }""", arg=[model, f"{target:.3f}"], polling="raf", timeout=60_000)
        waits.append(time.perf_counter() - t0)
        assert float(slider.get_attribute("value")) == pytest.approx(target, abs=1e-6)
        _settle(page)  # a quiet page before the next move
    print(f"compare slider redraw in the browser: median {statistics.median(waits):.3f} s "
          f"({', '.join(f'{w:.3f}' for w in waits)})")
    _no_exception(page)


def test_compare_disagreement_row_click_enlarges_it(server, page, models_root):
    """A click on an explorer row (its selection box) shows the image large with one Grad-CAM
    overlay per model, or says plainly that the image is not on this machine."""
    _open(page, server + "/compare", "Compare models")
    from detector import comparison

    names = store.model_names(models_root)  # the page starts with the default model and the next best
    models = comparison.preselect(names, {n: store.read_card(models_root / n) for n in names},
                                  store.default_model_name(models_root))
    heading = page.get_by_role("heading", name=re.compile("^(Disagreements and shared mistakes|Mistakes)$"))
    heading.scroll_into_view_if_needed()
    grid = page.locator('[data-testid="stDataFrame"]').last  # the explorer is the page's last table
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + 55)  # the first row's selection box
    shown = page.locator('[data-testid="stImage"]')
    missing = page.get_by_text(re.compile("is not on this machine"))
    shown.or_(missing).first.wait_for()
    _settle(page)
    _no_exception(page)
    if missing.count():
        assert shown.count() == 0
    else:
        assert shown.count() == 1 + len(models)
        captions = shown.all_inner_texts()
        for m in models:
            pattern = rf"{re.escape(m)}: P\(fake\) \d\.\d{{3}}, (FAKE|REAL) at"
            assert any(re.search(pattern, c) for c in captions), captions
    _shot(page, "compare_enlarged")


def test_training_page_opens(server, page):
    _open(page, server + "/training", "Training runs")
    assert page.get_by_role("heading", name="Test report").count() == 1
    _shot(page, "training")


def test_sidebar_navigation_lists_the_three_pages(server, page):
    """st.navigation's menu (not Streamlit's legacy pages/ list) leads
    from the Detect page to the others."""
    _open(page, server + "/", "Detect deepfakes")
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.wait_for()
    for label in ("Detect", "Compare models", "Training runs"):
        assert nav.get_by_text(label, exact=True).count() == 1, nav.inner_text()
    assert nav.get_by_text("ui", exact=True).count() == 0  # app/ui.py is a helper, not a page
    nav.get_by_text("Training runs", exact=True).click()
    page.get_by_role("heading", name="Training runs", exact=True).wait_for()
    _settle(page)
    _no_exception(page)


@pytest.mark.parametrize("path, title", [("compare", "Compare models"), ("training", "Training runs")])
def test_direct_link_to_a_fresh_server_opens_the_page_under_the_router(models_root, page, tmp_path,
                                                                        path, title):
    """A bookmark to /compare on a server no one has opened yet opens that page under the
    router (st.navigation's url_path): the three pages in the sidebar, the router's set-up run.
    With a pages/ folder beside streamlit_app.py Streamlit would serve it in its legacy mode
    instead (the page alone, every file of pages/ listed); the app keeps its pages in app/pages/."""
    with _streamlit(models_root, tmp_path / "server.log") as url:
        _open(page, f"{url}/{path}", title)
        nav = page.locator('[data-testid="stSidebarNav"]')
        nav.get_by_text("Training runs", exact=True).wait_for(timeout=30_000)
        labels = [t.strip() for t in nav.locator("a").all_inner_texts()]
        assert [t.split("\n")[-1] for t in labels] == ["Detect", "Compare models", "Training runs"], labels
        assert page.url.rstrip("/").endswith("/" + path)
        assert page.get_by_role("heading", name=title, exact=True).count() == 1


def test_four_sessions_at_once_each_get_their_verdict(server, browser, tmp_path):
    """Four browser sessions upload at the same time; each sees its own file's verdict."""
    files, pages = [], []
    for i in range(4):
        path = tmp_path / f"session_{i}.png"
        Image.fromarray(smooth_image(np.random.default_rng(100 + i), 96 + 8 * i)).save(path)
        files.append(path)
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in files]
    try:
        for ctx in contexts:
            pg = ctx.new_page()
            pg.set_default_timeout(SLOW)
            pg.goto(server + "/")
            pages.append(pg)
        for pg in pages:
            pg.get_by_role("heading", name="Detect deepfakes", exact=True).wait_for()
            _settle(pg)
        for pg, f in zip(pages, files):  # all four uploads go out before any result is awaited
            _upload(pg, [f])
        for i, (pg, f) in enumerate(zip(pages, files)):
            assert _verdict_of(pg, f.name) in VERDICTS
            _settle(pg)
            _no_exception(pg)
            others = [g.name for g in files if g != f]
            assert all(pg.get_by_role("heading", name=o, exact=True).count() == 0 for o in others)
    finally:
        for ctx in contexts:
            ctx.close()


def test_signed_sample_shows_the_evidence_panel_and_the_pdf_downloads(server, page):
    """Issue #25: a JPEG carrying a Content Credential that declares AI generation, uploaded in a
    real browser, gets its evidence panel with the reconciled line; the PDF report downloads."""
    signed = REPO_ROOT / "sample_images" / "credential_ai_declared.jpg"
    _open(page, server + "/", "Detect deepfakes")
    _upload(page, [signed])
    verdict = _verdict_of(page, signed.name)
    _settle(page)
    _no_exception(page)
    page.get_by_text("Evidence: model, Content Credentials, metadata").first.wait_for()
    # right under the verdict: a model verdict other than FAKE is overridden by the declaration
    under = page.get_by_text(re.compile(r"own metadata (also )?declares it AI-generated"))
    assert under.count() == 1, verdict
    assert ("also declares" in under.first.inner_text()) == (verdict == "FAKE"), verdict
    assert page.get_by_text(re.compile(r"Reconciled: .*declared AI-generated", re.I)).count() >= 1
    assert page.get_by_text(re.compile(r"Trust list used:")).count() >= 1
    with page.expect_download(timeout=SLOW) as info:
        page.get_by_role("button", name=re.compile("PDF report")).click()
    pdf = Path(info.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000, pdf[:20]
    _shot(page, "detect_evidence")
