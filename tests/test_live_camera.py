"""The Detect page's live camera (#29) in a real browser: chromium's fake camera plays a clip
made here from the shipped sample faces, streamlit-webrtc carries it to the server, and the page
shows that the frames coming back carry face labels; freeze turns the current frame into a
normal Detect result.

The server, the helpers and the skip rules are tests/test_browser.py's (no playwright or
/usr/bin/chromium: skipped, unless CI is set); without streamlit-webrtc the module is skipped.
"""
from __future__ import annotations

import importlib.util
import re
import time

import numpy as np
import pytest

# found, not imported: this process has TensorFlow loaded (app/live_ui.py says why that matters)
if importlib.util.find_spec("streamlit_webrtc") is None or importlib.util.find_spec("av") is None:
    pytest.skip("the live camera needs streamlit-webrtc (requirements.txt)", allow_module_level=True)

from test_browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    MISSING,
    SLOW,
    VERDICTS,
    _no_exception,
    _open,
    _settle,
    _shot,
    _verdict_of,
    server,  # noqa: F401 - the module's streamlit server (a fixture)
    sync_playwright,
)

from conftest import REPO_ROOT  # noqa: E402
from detector import images, live, report  # noqa: E402

pytestmark = pytest.mark.slow

FROZEN = "live camera (frozen frame)"
COUNTER_RE = re.compile(r"Labelled frames: (\d+)")
JUDGED_RE = re.compile(r"\b(REAL|FAKE|UNCERTAIN) \d\.\d\d\b")
JUDGED = [report.VERDICT_COLOURS[v] for v in ("REAL", "FAKE", "UNCERTAIN")]
NEAR = 45  # a pixel within this of a verdict colour (each channel) counts: the video is VP8-coded
LABEL_PIXELS = 800  # two boxes, 3 px wide round ~170 px squares, and their labels: several thousand

# the returned video's pixels near a REAL / FAKE / UNCERTAIN colour, read through a canvas
COLOURED_JS = """(v, [colours, near]) => {
  if (!v.videoWidth) return -1;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (colours.some(k => Math.abs(d[i] - k[0]) <= near && Math.abs(d[i + 1] - k[1]) <= near
                          && Math.abs(d[i + 2] - k[2]) <= near)) n++;
  return n;
}"""


def coloured(rgb: np.ndarray) -> int:
    """The same count on this side (the clip's own frames must have next to none)."""
    px = rgb.reshape(-1, 1, 3).astype(int)
    return int((np.abs(px - np.array(JUDGED)[None]) <= NEAR).all(-1).any(-1).sum())


@pytest.fixture(scope="module")
def clip_frames():
    pics = [live.around_face(images.decode_image(REPO_ROOT / "sample_images" / n))
            for n in ("astronaut.jpg", "fake_face_swap.jpg")]
    return live.demo_clip(pics, n_frames=30, size=(640, 480))


@pytest.fixture(scope="module")
def clip(clip_frames, tmp_path_factory):
    """A 640x480 .y4m of the real astronaut and the face-swap fake side by side, drifting."""
    path = tmp_path_factory.mktemp("clip") / "faces.y4m"
    path.write_bytes(live.y4m_bytes(clip_frames, fps=15))
    return path


@pytest.fixture(scope="module")
def camera_page(clip):
    """A chromium page whose camera is the clip (permission granted without asking)."""
    if MISSING:
        pytest.fail(f"CI is set, so the browser tests must run, but {MISSING}", pytrace=False)
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-video-capture={clip}",
                            "--disable-features=WebRtcHideLocalIpsWithMdns"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(SLOW)
        yield page
        context.close()
        browser.close()


def _labelled(page) -> int:
    texts = page.get_by_text(COUNTER_RE).all_inner_texts()
    return max((int(COUNTER_RE.search(t).group(1)) for t in texts), default=0)


def test_live_camera_labels_the_stream_and_freeze_gives_a_result(server, camera_page, clip_frames):  # noqa: F811
    """The clip holds (next to) no pixel of a verdict colour; the video that comes back does
    (boxes and labels drawn on the server), the page counts labelled frames, and Freeze gives the
    current frame a normal result with its faces found."""
    assert max(coloured(f) for f in clip_frames) < LABEL_PIXELS // 4
    page = camera_page
    _open(page, server + "/", "Detect deepfakes")
    page.get_by_text("Live camera", exact=True).click()
    streamer = page.frame_locator('iframe[title*="webrtc"]')
    streamer.get_by_role("button", name=re.compile("^start$", re.I)).click()
    deadline, seen = time.time() + SLOW / 1000, []
    while not seen or seen[-1] < LABEL_PIXELS:
        assert time.time() < deadline, f"no labels on the returned video: coloured pixels {seen[-20:]}"
        time.sleep(1)
        seen.append(streamer.locator("video").first.evaluate(COLOURED_JS, [JUDGED, NEAR]))
    size = streamer.locator("video").first.evaluate("v => [v.videoWidth, v.videoHeight]")
    assert size == [640, 480], size
    time.sleep(3)  # a few more labelled frames
    streamer.get_by_role("button", name=re.compile("^stop$", re.I)).click()
    _settle(page)  # the stream stopped: the page ran again, with the counts
    _no_exception(page)
    assert _labelled(page) >= 5, page.get_by_text(COUNTER_RE).all_inner_texts()
    counter = page.get_by_text(COUNTER_RE).first.inner_text()
    assert JUDGED_RE.search(counter), counter  # a face labelled REAL / FAKE / UNCERTAIN with its P(fake)
    page.get_by_role("button", name="Freeze").click()  # the last frame the stream sent
    verdict = _verdict_of(page, FROZEN)
    assert verdict in VERDICTS - {"NO FACE"}, verdict  # the faces were found on the frozen frame
    assert page.get_by_text(re.compile(r"region\(s\) scored|Show the score anyway")).count() >= 1
    _settle(page)
    _no_exception(page)
    _shot(page, "detect_live_camera")
