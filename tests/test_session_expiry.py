"""app/session_expiry.py: a closed tab's session is shut down (its uploads freed) when Streamlit
drops it from its store of disconnected sessions, and only then. The fix reaches into
Streamlit's private internals, so one test builds a real Runtime of the installed (pinned)
Streamlit and checks the fix still takes hold there."""
import re
import subprocess
import sys
import textwrap

import streamlit

from conftest import REPO_ROOT


class _FakeSession:
    def __init__(self, sid: str = "s"):
        self.id = sid
        self.shut_down = 0

    def shutdown(self):
        self.shut_down += 1


class _Info:
    def __init__(self):
        self.session = _FakeSession()


def test_disconnected_sessions_are_shut_down_when_streamlit_drops_them():
    """Streamlit forgets a closed tab's session after its TTL without shutting it down (its
    uploads stay in memory); our store shuts it down then, and only then."""
    from app import session_expiry

    now = [0.0]
    cache = session_expiry.ShutdownOnExpiryCache(maxsize=2, ttl=10, timer=lambda: now[0])
    resumed, expired, crowded, late = _Info(), _Info(), _Info(), _Info()
    cache["resumed"], cache["expired"] = resumed, expired
    del cache["resumed"]  # a reconnect takes it back: it lives on
    assert resumed.session.shut_down == 0
    now[0] = 11.0
    cache["crowded"] = crowded  # writing reaps the expired one
    assert expired.session.shut_down == 1 and "expired" not in cache
    cache["late"] = late
    cache["one more"] = _Info()  # over maxsize: the least recently used goes, shut down
    assert crowded.session.shut_down == 1 and late.session.shut_down == 0
    assert resumed.session.shut_down == 0 and expired.session.shut_down == 1


def test_session_fix_is_a_no_op_without_a_server():
    from app import session_expiry

    assert session_expiry.install() is False  # no Streamlit runtime in pytest


def test_the_installed_streamlit_is_the_pinned_one():
    """The fix is written against the Streamlit that requirements.txt pins; a bump of the pin
    reruns the test below against the new version."""
    pin = re.search(r"^streamlit==([\d.]+)\.\*$", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    assert pin, "requirements.txt pins streamlit==X.Y.*"
    assert streamlit.__version__.startswith(pin.group(1) + "."), (streamlit.__version__, pin.group(1))


def test_the_fix_takes_hold_in_a_real_runtime_of_the_pinned_streamlit():
    """A Runtime built as `streamlit run` builds it (in a fresh interpreter: a Runtime is a
    process-wide singleton): `install` swaps the session store's cache, keeps its size, TTL
    and sessions, is idempotent; a session the store deletes (a reconnect) lives on, one it
    lets expire is shut down."""
    code = textwrap.dedent("""
        import time
        from streamlit.runtime import Runtime, RuntimeConfig
        from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
        from streamlit.runtime.memory_session_storage import MemorySessionStorage
        from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
        from streamlit.runtime.session_manager import SessionInfo
        from app import session_expiry

        class Session:
            def __init__(self, sid):
                self.id, self.shut_down = sid, 0
            def shutdown(self):
                self.shut_down += 1

        storage = MemorySessionStorage(maxsize=7, ttl_seconds=120)
        Runtime(RuntimeConfig(script_path="streamlit_app.py", media_file_storage=MemoryMediaFileStorage("/media"),
                              uploaded_file_manager=MemoryUploadedFileManager("/upload"), session_storage=storage))
        early = Session("early")
        storage.save(SessionInfo(client=None, session=early))
        assert session_expiry.install() is True
        assert session_expiry.install() is True
        cache = storage._cache
        assert type(cache) is session_expiry.ShutdownOnExpiryCache, type(cache)
        assert (cache.maxsize, cache.ttl) == (7, 120), (cache.maxsize, cache.ttl)
        assert storage.get("early").session is early
        resumed, dropped = Session("resumed"), Session("dropped")
        storage.save(SessionInfo(client=None, session=resumed))
        storage.delete("resumed")
        storage.save(SessionInfo(client=None, session=dropped))
        cache.expire(time.monotonic() + 121)
        assert storage.get("dropped") is None and storage.get("early") is None
        assert (early.shut_down, dropped.shut_down, resumed.shut_down) == (1, 1, 0)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "ok"
