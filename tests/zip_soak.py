"""Zip soak: does a session that expands a large zip give its memory back when it ends (#27)?

Starts ONE `streamlit run streamlit_app.py` server (a short `server.disconnectedSessionTTL`,
so closed sessions expire quickly), warms it up with one small image, then runs SESSIONS
browser sessions (Debian chromium driven by playwright, as tests/memory_soak.py): each
uploads a small zip holding MEMBERS large, highly compressible BMPs, waits until the whole
batch is scored (the report buttons are drawn) and closes. After the TTL it runs one more
small session (Streamlit drops expired sessions when another connects; the page hands freed
memory back after a batch) and prints the server's
resident memory: the baseline, after each session and at the end. A page that keeps a
session's uploads alive after it ends (a download callback closing over the page's globals)
shows as growth of about the zip's decompressed size per session; the script exits 1 when the
server keeps more than `--max-growth` MiB (default: half of one zip's decompressed size) over
its baseline at the end. Not collected by pytest.

    .venv/bin/python tests/zip_soak.py                       # 3 sessions, 6 x 4000x3000 BMPs
    .venv/bin/python tests/zip_soak.py --sessions 4 --members 8 --repo /path/to/other/checkout
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_soak import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    detect_page,
    free_port,
    log_has_traceback,
    rss_mb,
    start_server,
    stop_server,
    write_image,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_zip(path: Path, members: int, width: int, height: int) -> int:
    """A zip of `members` flat-colour BMPs (each different); returns the decompressed bytes."""
    total = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            buf = io.BytesIO()
            Image.fromarray(np.full((height, width, 3), (20 * i) % 256, np.uint8)).save(buf, "BMP")
            zf.writestr(f"set/{i:02d}.bmp", buf.getvalue())
            total += buf.tell()
    return total


def session(browser, url: str, upload: Path, timeout_ms: int) -> None:
    """One browser session: open Detect, upload, wait for the whole batch (report buttons), close."""
    with detect_page(browser, url, upload, timeout_ms) as page:
        page.get_by_text("HTML report", exact=True).first.wait_for()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--members", type=int, default=6, help="BMPs in the zip")
    ap.add_argument("--size", default="4000x3000", help="BMP width x height (under the app's pixel limit)")
    ap.add_argument("--ttl", type=int, default=5, help="server.disconnectedSessionTTL, seconds")
    ap.add_argument("--repo", default=str(REPO_ROOT), help="checkout whose streamlit_app.py is served")
    ap.add_argument("--models", default=str(REPO_ROOT / "models"))
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for one batch")
    ap.add_argument("--max-growth", type=float, default=None,
                    help="MiB the server may keep over its baseline once the sessions expired (default: half of "
                         "one zip's decompressed size: a kept upload shows as about all of it); more exits 1")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="deepfake-lab-zip-soak-") as tmp:
        tmp = Path(tmp)
        upload = tmp / "big.zip"
        raw = write_zip(upload, args.members, width, height)
        print(f"zip {upload.stat().st_size / 1e6:.1f} MB holding {args.members} BMPs, {raw / 1e6:.0f} MB decompressed",
              flush=True)
        port = free_port()
        server = start_server(port, str(args.models), tmp / "server.log", ttl=args.ttl, repo=Path(args.repo))
        url = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                context = browser.new_context()
                page = context.new_page()  # warm-up: the model, TensorFlow and face detector loaded
                page.set_default_timeout(int(args.timeout * 1000))
                page.goto(url + "/")
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                    str(write_image(tmp, 1)))
                page.get_by_text("HTML report", exact=True).first.wait_for()
                context.close()
                time.sleep(args.ttl + 3)
                base = rss_mb(server.pid)
                print(f"baseline (after a warm-up session) {base:.0f} MiB", flush=True)
                for i in range(1, args.sessions + 1):
                    t0 = time.time()
                    session(browser, url, upload, int(args.timeout * 1000))
                    print(f"after session {i}: {rss_mb(server.pid):.0f} MiB ({time.time() - t0:.0f} s)", flush=True)
                time.sleep(args.ttl + 3)
                # a new connection drops the expired sessions; its small batch ends with malloc_trim
                session(browser, url, write_image(tmp, 2), int(args.timeout * 1000))
                time.sleep(3)
                end = rss_mb(server.pid)
                print(f"after the sessions expired: {end:.0f} MiB ({end - base:+.0f} MiB over the baseline)", flush=True)
                browser.close()
                bound = args.max_growth if args.max_growth is not None else raw / 2**20 / 2
                if end - base > bound:
                    print(f"FAIL: the server kept {end - base:.0f} MiB over its baseline after the sessions ended "
                          f"(bound {bound:.0f} MiB): a session's uploads outlive it", file=sys.stderr)
                    return 1
                print(f"ok: {end - base:+.0f} MiB over the baseline, within {bound:.0f} MiB", flush=True)
        finally:
            stop_server(server)
        if log_has_traceback(tmp / "server.log"):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
