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
from detector import images, live  # noqa: E402

pytestmark = pytest.mark.slow

FROZEN = "live camera (frozen frame)"
COUNTER_RE = re.compile(r"Labelled frames: (\d+)")
JUDGED_RE = re.compile(r"\b(REAL|FAKE|UNCERTAIN) \d\.\d\d\b")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 640x480 .y4m of the real astronaut and the face-swap fake side by side, drifting."""
    pics = [live.around_face(images.decode_image(REPO_ROOT / "sample_images" / n))
            for n in ("astronaut.jpg", "fake_face_swap.jpg")]
    path = tmp_path_factory.mktemp("clip") / "faces.y4m"
    path.write_bytes(live.y4m_bytes(live.demo_clip(pics, n_frames=30, size=(640, 480)), fps=15))
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


def test_live_camera_labels_the_stream_and_freeze_gives_a_result(server, camera_page):  # noqa: F811
    page = camera_page
    _open(page, server + "/", "Detect deepfakes")
    page.get_by_text("Live camera", exact=True).click()
    streamer = page.frame_locator('iframe[title*="webrtc"]')
    streamer.get_by_role("button", name=re.compile("^start$", re.I)).click()
    # no _settle() while the stream plays: the counter's fragment reruns every second
    # the counter (a fragment refreshed every second) counts returned frames carrying a face label
    deadline = time.time() + SLOW / 1000
    while _labelled(page) < 10:
        assert time.time() < deadline, "no labelled frames came back: " + " | ".join(
            page.get_by_text(COUNTER_RE).all_inner_texts())
        time.sleep(1)
    counter = page.get_by_text(COUNTER_RE).first.inner_text()
    assert JUDGED_RE.search(counter), counter  # a face labelled REAL / FAKE / UNCERTAIN with its P(fake)
    # the frames come back to the page: the component's <video> plays (its size is the clip's)
    size = streamer.locator("video").first.evaluate("v => [v.videoWidth, v.videoHeight, v.paused]")
    assert size[:2] == [640, 480] and size[2] is False, size
    page.get_by_role("button", name="Freeze").click()
    verdict = _verdict_of(page, FROZEN)
    assert verdict in VERDICTS - {"NO FACE"}, verdict  # the faces were found on the frozen frame
    assert page.get_by_text(re.compile(r"region\(s\) scored|Show the score anyway")).count() >= 1
    _no_exception(page)
    streamer.get_by_role("button", name=re.compile("^stop$", re.I)).click()
    _settle(page)  # stopped: the counter no longer reruns
    _no_exception(page)
    assert _labelled(page) >= 10  # the count stays on the page after the stream ends
    _shot(page, "detect_live_camera")
