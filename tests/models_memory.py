"""Server memory as one browser session switches through every shipped model (#24 item 7).
Not a test (no test_ prefix): run it by hand.

    .venv/bin/python tests/models_memory.py                               # the bound as shipped
    DEEPFAKE_LAB_MAX_MODELS=2 .venv/bin/python tests/models_memory.py     # a tighter bound
    THINK_S=20 .venv/bin/python tests/models_memory.py                    # pick 20 s after the page showed

Starts ONE `streamlit run streamlit_app.py` (MALLOC_ARENA_MAX=2, as the README's command),
opens the Detect page in Debian chromium (playwright), picks sample_images/fake_face_swap.jpg
(Grad-CAM on), then chooses each shipped model in turn as the Detect model and waits for its
verdict: every model is loaded, scores a face and draws its heatmap. Prints the server's
resident memory (MiB, /proc) after each model, and at the end.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from memory_soak import BADGE_RE, CHROMIUM, CHROMIUM_ARGS, REPO_ROOT, free_port, rss_mb, settle, wait_healthy

SAMPLE = "fake_face_swap.jpg"
THINK_S = float(os.environ.get("THINK_S", "0"))  # seconds between the page showing and the first pick


def main() -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from playwright.sync_api import sync_playwright

    from detector import store

    models = store.model_names(REPO_ROOT / "models")
    port = free_port()
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "TF_CPP_MIN_LOG_LEVEL": "2",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.address",
                             "127.0.0.1", "--server.port", str(port), "--server.headless", "true"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, rows = f"http://127.0.0.1:{port}", []
    try:
        wait_healthy(url, proc)
        rows.append(("started", round(rss_mb(proc.pid))))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(240_000)
            page.goto(url + "/")
            page.get_by_role("heading", name="Detect deepfakes", exact=True).wait_for()
            settle(page)
            time.sleep(THINK_S)  # the start-up warm-up (detector.warmup) has this long to itself
            box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Or try sample images")
            box.locator("input").first.click()
            page.get_by_role("option", name=re.compile("^" + re.escape(SAMPLE))).first.click()
            page.keyboard.press("Escape")
            for i, name in enumerate(models):
                if i:  # the first is the default, already chosen
                    page.locator('[data-testid="stSelectbox"]').filter(has_text="Model").first.click()
                    page.get_by_role("option", name=re.compile("^" + re.escape(name) + "( |$)")).first.click()
                page.get_by_role("heading", name=f"sample: {SAMPLE}", exact=True).wait_for()
                page.locator('[data-testid="stHorizontalBlock"]').filter(has_text=BADGE_RE).first.wait_for()
                settle(page)
                rows.append((name, round(rss_mb(proc.pid))))
                print(json.dumps(rows[-1]), flush=True)
            time.sleep(5)
            rows.append(("5 s later", round(rss_mb(proc.pid))))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
    print(json.dumps({"think_s": THINK_S, "max_models": os.environ.get("DEEPFAKE_LAB_MAX_MODELS", "(default)"), "rss_mib": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
