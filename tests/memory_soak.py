"""Memory soak: does the dashboard server's memory stop growing under many predictions?

Starts ONE `streamlit run streamlit_app.py` server, then runs COUNT predictions through a
real browser (Debian chromium driven by playwright, as in tests/test_browser.py): each
prediction opens a fresh browser session on the Detect page, uploads a never-seen image
(so nothing comes from the score cache), waits for its verdict and closes the session.
Every EVERY predictions it prints the server's resident memory (VmRSS from /proc), so a
plateau (or a leak) is visible. Not collected by pytest (no test_ prefix).

    .venv/bin/python tests/memory_soak.py                 # 200 predictions, RSS every 25
    .venv/bin/python tests/memory_soak.py --count 10 --every 5
    .venv/bin/python tests/memory_soak.py --models /path/to/models   # DEEPFAKE_LAB_MODELS
    MALLOC_ARENA_MAX=16 .venv/bin/python tests/memory_soak.py   # glibc default on 2 cores (8 per core)

Expect growth until the model, TensorFlow and MTCNN are loaded and the caches are full
(st.cache_data keeps at most 64 scored images), then a flat line.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BADGE_RE = re.compile("NO FACE|CANNOT JUDGE|REAL|FAKE|UNCERTAIN")  # every verdict the page can show


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (psutil when installed, else /proc/<pid>/status)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        pass
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


IDLE_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-testid="stSkeleton"]')
                 && !document.querySelector('[data-stale="true"]')"""
"""True in the browser when the page is idle: no running icon, no skeleton, nothing stale."""


def settle(page) -> None:
    """Wait until the page has been idle (IDLE_JS) three checks in a row."""
    calm = 0
    while calm < 3:
        calm = calm + 1 if page.evaluate(IDLE_JS) else 0
        time.sleep(0.3)


def start_server(port: int, models: str | None, log_path: Path, ttl: int | None = None,
                 repo: Path = REPO_ROOT) -> subprocess.Popen:
    """`streamlit run` as README command 1 starts it, on 127.0.0.1:port, once healthy
    (ttl: seconds a closed session is kept, Streamlit's default when None; repo: the checkout served)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    env.setdefault("MALLOC_ARENA_MAX", "2")  # as README command 1 starts the server
    if models:
        env["DEEPFAKE_LAB_MODELS"] = str(Path(models).resolve())
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true"]
    if ttl is not None:
        cmd += ["--server.disconnectedSessionTTL", str(ttl)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{port}", proc, log_path)
    return proc


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path | None = None, seconds: float = 120) -> None:
    """Return once the server at `url` answers its health check; SystemExit when it exits first
    (with the end of its log when there is one) or is not healthy within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text()[-3000:] if log_path else ""
            raise SystemExit(f"streamlit exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"streamlit not healthy after {seconds:g} s")


def write_image(folder: Path, i: int) -> Path:
    """A unique 256 px picture per prediction (smooth gradient + noise), JPEG or PNG."""
    rng = np.random.default_rng(10_000 + i)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32) / 255
    img = rng.uniform(40, 200, 3) + rng.uniform(-60, 60, 3) * xx[..., None] + rng.uniform(-60, 60, 3) * yy[..., None]
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    path = folder / f"soak_{i:04d}.{'jpg' if i % 2 else 'png'}"
    Image.fromarray(img).save(path)
    return path


@contextmanager
def detect_page(browser, url: str, upload: Path, timeout_ms: int):
    """One browser session: open Detect and choose `upload`; the session closes on exit."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(timeout_ms)
        page.goto(url + "/")
        page.get_by_role("heading", name="Detect deepfakes", exact=True).wait_for()
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(upload))
        yield page
    finally:
        context.close()


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server, killing it if it has not exited after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def log_has_traceback(log_path: Path) -> bool:
    """True (and the log's tail on stderr) when the server logged a traceback: a soak that
    kept its memory flat but crashed a session has not passed."""
    log = log_path.read_text(errors="replace")
    if "Traceback" not in log:
        return False
    print("server log has a traceback:\n" + log[-3000:], file=sys.stderr)
    return True


def predict_once(browser, url: str, image: Path, timeout_ms: int) -> str:
    """One browser session: open Detect, upload, wait for the verdict badge, close."""
    with detect_page(browser, url, image, timeout_ms) as page:
        heading = page.get_by_role("heading", name=image.name, exact=True)
        header = page.locator('[data-testid="stHorizontalBlock"]').filter(has=heading).filter(has_text=BADGE_RE)
        header.first.wait_for()
        return BADGE_RE.search(header.first.inner_text()).group(0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="predictions to run (default 200)")
    ap.add_argument("--every", type=int, default=25, help="print the server's RSS every N predictions")
    ap.add_argument("--models", help="models folder for the server (DEEPFAKE_LAB_MODELS); default: models/")
    ap.add_argument("--timeout", type=float, default=240, help="seconds to wait for one verdict")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="deepfake-lab-soak-") as tmp:
        tmp = Path(tmp)
        port = free_port()
        server = start_server(port, args.models, tmp / "server.log")
        url = f"http://127.0.0.1:{port}"
        t0 = time.time()
        rows = [(0, rss_mb(server.pid))]
        print(f"server pid {server.pid} on {url}", flush=True)
        print(f"{'predictions':>11} {'rss_mib':>9} {'seconds':>8}  verdicts", flush=True)
        print(f"{0:>11} {rows[0][1]:>9.1f} {0:>8.1f}", flush=True)
        verdicts: dict[str, int] = {}
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                for i in range(1, args.count + 1):
                    image = write_image(tmp, i)
                    v = predict_once(browser, url, image, int(args.timeout * 1000))
                    verdicts[v] = verdicts.get(v, 0) + 1
                    image.unlink()
                    if i % args.every == 0 or i == args.count:
                        rows.append((i, rss_mb(server.pid)))
                        print(f"{i:>11} {rows[-1][1]:>9.1f} {time.time() - t0:>8.1f}  {verdicts}", flush=True)
                browser.close()
        finally:
            stop_server(server)
        if log_has_traceback(tmp / "server.log"):
            return 1
    if len(rows) >= 3:
        half = rows[len(rows) // 2]
        print(f"RSS {rows[1][1]:.1f} MiB after {rows[1][0]} predictions, {half[1]:.1f} after {half[0]}, "
              f"{rows[-1][1]:.1f} after {rows[-1][0]}: second-half growth {rows[-1][1] - half[1]:+.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
