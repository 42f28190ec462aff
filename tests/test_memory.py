"""detector.memory: giving freed heap pages back works and never raises."""
import sys

import numpy as np
import pytest

from detector import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim and /proc are Linux")
def test_release_free_memory_gives_pages_back():
    before = memory.rss_mib()
    assert before is not None and before > 0
    # many mid-sized blocks (below the mmap threshold) land in the heap; freeing them leaves
    # the pages resident until malloc_trim hands them back
    blocks = [np.ones(16_000, np.uint8) for _ in range(20_000)]  # ~320 MB
    grown = memory.rss_mib()
    survivors = blocks[::50]  # a few live blocks pin the heap: free() alone returns nothing
    del blocks
    held = memory.rss_mib()
    memory.release_free_memory()
    after = memory.rss_mib()
    assert grown - before > 200 and held > grown - 50, (before, grown, held)
    assert after < held - 150, (before, grown, held, after)
    assert len(survivors) == 400


def test_release_is_safe_to_call_repeatedly():
    for _ in range(3):
        assert memory.release_free_memory() in (True, False)


class _FakeSession:
    def __init__(self):
        self.shut_down = 0

    def shutdown(self):
        self.shut_down += 1


class _Info:
    def __init__(self):
        self.session = _FakeSession()


def test_disconnected_sessions_are_shut_down_when_streamlit_drops_them():
    """Streamlit forgets a closed tab's session after its TTL without shutting it down (its
    uploads stay in memory); our store shuts it down then, and only then."""
    from app import ui

    now = [0.0]
    cache = ui.ShutdownOnExpiryCache(maxsize=2, ttl=10, timer=lambda: now[0])
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
    from app import ui

    assert ui.shut_down_expired_sessions() is False  # no Streamlit runtime in pytest
