"""Cold start (#24 item 6): the first verdict on a freshly started server, in a real browser.

A fresh `streamlit run` server (the helpers and fixtures of tests/test_browser.py: Debian
chromium driven by playwright), the Detect page opened as soon as the server answers, then a
sample photo with a face picked `THINK_S` after the page has opened (a person finding a file):
the time from the pick to its verdict heading is the cold first verdict. It is written to
test-artifacts/cold_start.json with every loading message the page showed meanwhile, and
printed: the issue's bound (`COLD_VERDICT_S`) is read from these numbers and
docs/performance.md, not asserted, since a shared CI machine's load doubles it
(`pytest tests/test_cold_start.py -s`, or `python tests/cold_start_timing.py`).
"""
from __future__ import annotations

import json
import re
import time

import pytest
import test_browser as tb

from conftest import REPO_ROOT
from detector import store, warmup

browser, page = tb.browser, tb.page  # the browser module's fixtures (it skips when chromium is missing)

pytestmark = pytest.mark.slow

COLD_VERDICT_S = 6.0
"""Issue #24: the first verdict after a fresh start within 6 s on the project's 2-core machine
(printed beside the measured figure, not asserted)."""
THINK_S = 10.0
"""Seconds between the page showing and the pick: what a person takes to choose a photo, and
what the start-up warm-up has to load in. A pick at once (a script) meets the rest of the
warm-up on the page's bar: `python tests/cold_start_timing.py` measures that case too."""
SAMPLE = "fake_face_swap.jpg"  # a photo with one face: MTCNN, the model and Grad-CAM all run

# every progress / spinner / status text the page shows, collected in the browser as it appears
WATCH_JS = """() => {
  window.__loading = [];
  const grab = () => document.querySelectorAll(
      '[data-testid="stProgress"], [data-testid="stSpinner"], [data-testid="stStatusWidget"]').forEach(e => {
    const t = (e.innerText || '').trim();
    if (t && !window.__loading.includes(t)) window.__loading.push(t);
  });
  new MutationObserver(grab).observe(document.body, {subtree: true, childList: true, characterData: true});
  grab();
}"""


def test_first_verdict_after_a_fresh_start(models_root, page, tmp_path):
    """Cold start must not leave a user waiting on an unexplained bar: the face detector and the
    default model are warmed from the first visit on, so a photo picked `THINK_S` after the page
    opened gets its verdict with whatever still loads named on the bar. Fails when there is no
    verdict or the bar says a bare "Loading model..."; the pick-to-verdict time is printed
    beside `COLD_VERDICT_S`."""
    if models_root != REPO_ROOT / "models":
        pytest.skip("the cold-start figure is about the shipped models")
    with tb._streamlit(models_root, tmp_path / "server.log") as url:
        t_server = time.perf_counter()
        page.goto(url + "/")
        page.get_by_role("heading", name="Detect deepfakes", exact=True).wait_for()
        tb._settle(page)
        page.evaluate(WATCH_JS)
        t_open = time.perf_counter()
        time.sleep(THINK_S)
        box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Or try sample images")
        box.locator("input").first.click()
        page.get_by_role("option", name=re.compile("^" + re.escape(SAMPLE))).first.click()
        t_pick = time.perf_counter()
        page.keyboard.press("Escape")
        verdict = tb._verdict_of(page, f"sample: {SAMPLE}")
        t_verdict = time.perf_counter()
        loading = page.evaluate("() => window.__loading")
        tb._settle(page)
        tb._no_exception(page)
    figures = {"pick_to_verdict_s": round(t_verdict - t_pick, 2), "page_open_s": round(t_open - t_server, 2),
               "think_s": THINK_S, "bound_s": COLD_VERDICT_S, "verdict": verdict, "loading": loading}
    tb.ARTIFACTS.mkdir(exist_ok=True)
    (tb.ARTIFACTS / "cold_start.json").write_text(json.dumps(figures, indent=2))
    print(figures)
    assert verdict in tb.VERDICTS
    # whatever was still loading when the photo was picked was said by name, never a bare "Loading model..."
    default = store.default_model_name(models_root)
    named = {warmup.TENSORFLOW, warmup.FACE_DETECTOR, warmup.MODEL.format(name=default),
             warmup.GRADCAM.format(name=default), "Preparing..."}
    assert all(t in named for t in loading if t.startswith(("Loading", "Preparing"))), loading
