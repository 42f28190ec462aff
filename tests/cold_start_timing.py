"""The cold first verdict in a real browser, for docs/performance.md. Not a test (no test_
prefix): run it by hand.

    .venv/bin/python tests/cold_start_timing.py                       # this checkout, pick at once
    .venv/bin/python tests/cold_start_timing.py --think 8             # pick 8 s after the page showed
    .venv/bin/python tests/cold_start_timing.py --repo /tmp/before    # another checkout (git archive)

Starts a fresh `streamlit run streamlit_app.py` in the checkout (its own models/), opens the
Detect page in Debian chromium (playwright) as soon as the server answers, waits `--think`
seconds, picks sample_images/fake_face_swap.jpg and prints one JSON line: the seconds from the
pick to the verdict heading, from health to the page shown, and the 1-minute load average
(the machine is shared: compare runs made one after the other). `DEEPFAKE_LAB_WARMUP=0` in
the environment switches the start-up warm-up off.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from memory_soak import free_port, settle, wait_healthy

SAMPLE = "fake_face_swap.jpg"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--think", type=float, default=0.0, help="seconds between the page showing and the pick")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "DEEPFAKE_LAB_MODELS": str(args.repo / "models"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "PYTHONPATH": str(args.repo)}
    t_spawn = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.address",
                             "127.0.0.1", "--server.port", str(port), "--server.headless", "true"],
                            cwd=args.repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        t_healthy = time.perf_counter()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(240_000)
            page.goto(url + "/")
            page.get_by_role("heading", name="Detect deepfakes", exact=True).wait_for()
            settle(page)
            t_open = time.perf_counter()
            time.sleep(args.think)
            box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Or try sample images")
            box.locator("input").first.click()
            page.get_by_role("option", name=re.compile("^" + re.escape(SAMPLE))).first.click()
            t_pick = time.perf_counter()
            page.keyboard.press("Escape")
            page.get_by_role("heading", name=f"sample: {SAMPLE}", exact=True).wait_for()
            t_verdict = time.perf_counter()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
    print(json.dumps({"label": args.label or str(args.repo), "think_s": args.think,
                      "pick_to_verdict_s": round(t_verdict - t_pick, 2), "page_open_s": round(t_open - t_healthy, 2),
                      "start_to_healthy_s": round(t_healthy - t_spawn, 2), "load1": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
