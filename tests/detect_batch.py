"""Acceptance run of the Detect page's batch input (issue #3): 20 mixed images at once.

Generates 20 files in a temporary folder from sample_images/ (JPEG, PNG, WebP, BMP, GIF and
TIFF variants of the single face, the group photo, the cat and the faceless coffee cup, in
two sizes, plus one truncated JPEG), starts ONE `streamlit run streamlit_app.py`, opens
the Detect page in a real browser (Debian chromium driven by playwright, as in
tests/test_browser.py), uploads all 20 in one go and polls the page's counters (Fake /
Uncertain / Real / Error, drawn as the rows arrive) until they add up to 20. It reports

* seconds from the upload to the first row, to the last (20th) row, and to the end of
  the script run (details of every image drawn),
* how many rows the counters showed over time (the table streams in),
* the messages on the page (errors, no-face notes),
* that the CSV download holds the 20 rows and the HTML report names every file.

Not collected by pytest (no test_ prefix). Nothing is written in the repository except,
with --shot, a screenshot in test-artifacts/.

    .venv/bin/python tests/detect_batch.py                  # shipped models
    .venv/bin/python tests/detect_batch.py --json out.json  # the numbers as JSON too
    .venv/bin/python tests/detect_batch.py --models DIR --no-gradcam --shot
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from memory_soak import CHROMIUM, CHROMIUM_ARGS, REPO_ROOT, free_port, start_server

SAMPLES = REPO_ROOT / "sample_images"
COUNTERS = ("Fake", "Uncertain", "Real", "Error")
# (sample, format, longest side or None = as shipped): 19 images + 1 corrupt file = 20
PLAN = [
    ("astronaut", "JPEG", None), ("astronaut", "PNG", None), ("astronaut", "WEBP", None),
    ("astronaut", "BMP", 384), ("astronaut", "GIF", None), ("astronaut", "TIFF", 384),
    ("chelsea_cat", "JPEG", None), ("chelsea_cat", "PNG", 300), ("chelsea_cat", "WEBP", None),
    ("chelsea_cat", "GIF", 300), ("chelsea_cat", "TIFF", None),
    ("no_face_coffee", "JPEG", None), ("no_face_coffee", "PNG", 400), ("no_face_coffee", "BMP", None),
    ("astronaut_group", "JPEG", None), ("astronaut_group", "PNG", 800), ("astronaut_group", "WEBP", None),
    ("astronaut_group", "TIFF", 640), ("astronaut_group", "GIF", None),
]
SUFFIX = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tiff"}

PROBE_JS = """() => {
    const counts = {};
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
        const lines = m.innerText.split('\\n').map(s => s.trim()).filter(Boolean);
        if (lines.length >= 2) counts[lines[0]] = Number(lines[lines.length - 1]);
    }
    const running = !!document.querySelector('[data-testid="stStatusWidget"]')
                    || !!document.querySelector('[data-stale="true"]');
    return {counts, running};
}"""


def make_images(folder: Path) -> list[Path]:
    """The 20 upload files (19 decodable variants of the samples, one truncated JPEG)."""
    out = []
    for i, (name, fmt, side) in enumerate(PLAN, start=1):
        img = Image.open(SAMPLES / f"{name}.jpg").convert("RGB")
        if side:
            img.thumbnail((side, side))
        path = folder / f"{i:02d}_{name}_{side or 'full'}.{SUFFIX[fmt]}"
        img.save(path, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
        out.append(path)
    whole = (SAMPLES / "astronaut.jpg").read_bytes()
    corrupt = folder / "20_corrupt_truncated.jpg"
    corrupt.write_bytes(whole[: len(whole) // 3])
    out.append(corrupt)
    return out


def _settled(page, seconds: float) -> None:
    deadline, calm = time.time() + seconds, 0
    while calm < 3:
        if time.time() > deadline:
            raise SystemExit("the page kept running")
        calm = calm + 1 if not page.evaluate(PROBE_JS)["running"] else 0
        time.sleep(0.3)


def run(args) -> dict:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="deepfake-lab-batch-") as tmp:
        tmp = Path(tmp)
        (tmp / "upload").mkdir()
        files = make_images(tmp / "upload")
        port = free_port()
        server = start_server(port, args.models, tmp / "server.log")
        url = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
                page = context.new_page()
                page.set_default_timeout(args.timeout * 1000)
                page.goto(url + "/")
                page.get_by_role("heading", name="Detect deepfakes", exact=True).wait_for()
                _settled(page, args.timeout)
                if args.no_gradcam:
                    page.get_by_text("Grad-CAM heatmaps", exact=True).click()
                    _settled(page, args.timeout)
                if args.warm:  # load TensorFlow, the model and MTCNN first: time the batch alone
                    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                        str(SAMPLES / "chelsea_cat.jpg"))
                    page.get_by_role("heading", name="chelsea_cat.jpg", exact=True).wait_for()
                    _settled(page, args.timeout)
                    page.reload()
                    page.get_by_role("heading", name="Detect deepfakes", exact=True).wait_for()
                    _settled(page, args.timeout)

                timeline, seen = [], -1
                t0 = time.perf_counter()
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                    [str(f) for f in files])
                deadline = t0 + args.timeout
                t_last_row = t_done = None
                while time.perf_counter() < deadline:
                    probe = page.evaluate(PROBE_JS)
                    n = sum(int(probe["counts"].get(k, 0)) for k in COUNTERS)
                    now = time.perf_counter() - t0
                    if n != seen:
                        timeline.append((round(now, 2), n))
                        seen = n
                    if n >= len(files) and t_last_row is None:
                        t_last_row = now
                    if t_last_row is not None and not probe["running"]:
                        t_done = now
                        break
                    time.sleep(0.1)
                if t_done is None:
                    raise SystemExit(f"no 20 rows after {args.timeout} s: {timeline}")
                _settled(page, args.timeout)
                counts = page.evaluate(PROBE_JS)["counts"]
                alerts = [t.strip() for t in page.locator('[data-testid="stAlert"]').all_inner_texts()]

                with page.expect_download() as dl:
                    page.get_by_role("button", name="Results CSV").click()
                csv = pd.read_csv(io.BytesIO(Path(dl.value.path()).read_bytes()))
                with page.expect_download() as dl:
                    page.get_by_role("button", name="HTML report").click()
                html = Path(dl.value.path()).read_text()
                if args.shot:
                    shots = REPO_ROOT / "test-artifacts"
                    shots.mkdir(exist_ok=True)
                    page.screenshot(path=str(shots / "detect_batch.png"), full_page=True)
                context.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
        log = (tmp / "server.log").read_text(errors="replace")

    names = [f.name for f in files]
    first = next((t for t, n in timeline if n > 0), None)
    return {
        "files": len(files), "seconds_to_first_row": first, "seconds_to_last_row": round(t_last_row, 2),
        "seconds_to_idle": round(t_done, 2), "rows_over_time": timeline,
        "counters": {k: int(counts.get(k, 0)) for k in COUNTERS},
        "csv_rows": len(csv), "csv_files_match": sorted(csv["file"]) == sorted(names),
        "csv_columns": list(csv.columns), "csv_verdicts": csv["verdict"].value_counts().to_dict(),
        "html_bytes": len(html), "html_names_every_file": all(n in html for n in names),
        "messages": alerts, "server_traceback": "Traceback" in log,
        "table": csv[["file", "faces", "p_fake", "verdict", "ms", "error"]].to_dict("records"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="models folder for the server (DEEPFAKE_LAB_MODELS); default: models/")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for the batch")
    ap.add_argument("--no-gradcam", action="store_true", help="switch Grad-CAM off first")
    ap.add_argument("--cold", dest="warm", action="store_false",
                    help="do not warm up first (the timing then includes loading TensorFlow, the model "
                         "and MTCNN)")
    ap.add_argument("--shot", action="store_true", help="screenshot to test-artifacts/detect_batch.png")
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args(argv)
    result = run(args)
    for row in result["table"]:
        print(f"  {row['file']:<34} faces={row['faces']!s:>4} p_fake={row['p_fake']!s:>7} "
              f"{row['verdict']:<9} {row['ms']!s:>7} ms {row['error'] or ''}")
    for k, v in result.items():
        if k != "table":
            print(f"{k}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    ok = (result["csv_rows"] == result["files"] and result["csv_files_match"] and result["html_names_every_file"]
          and sum(result["counters"].values()) == result["files"] and not result["server_traceback"])
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
