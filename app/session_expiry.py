"""Closed tabs must not keep their uploads in the server: the one place the app reaches into
Streamlit's private internals.

Streamlit keeps a closed tab's session for `server.disconnectedSessionTTL` seconds so that a
reconnect can resume it, then drops it from its store of disconnected sessions (a `TTLCache`)
WITHOUT shutting it down: its uploaded files, media (images drawn) and dataframes stay in the
server for good (streamlit/streamlit#12506; still so in the pinned 1.67, whose
`MemorySessionStorage` has no public hook for it). `install` swaps that store's cache for
`ShutdownOnExpiryCache`, which shuts a session down when the cache drops it on its own.

Private names used (all of Streamlit 1.67, `requirements.txt` pins 1.67.*):
`streamlit.runtime.caching.ttl_cache.TTLCache` (`expire`, `_evict_lru`), the runtime's
`_session_mgr`, its `_session_storage` and `_storage_lock`, and that storage's `_cache`.
`tests/test_session_expiry.py` builds a real Runtime of the installed Streamlit and checks
`install` still finds them; on a version without them `install` changes nothing and logs why.
"""
from __future__ import annotations

import logging

try:
    from streamlit.runtime.caching.ttl_cache import TTLCache as _TTLCache
except ImportError:  # pragma: no cover - another Streamlit: the fix is skipped (install says so)
    _TTLCache = None

_LOG = logging.getLogger(__name__)


def _shut_down(session_info) -> None:
    try:
        session_info.session.shutdown()
    except Exception:  # noqa: BLE001 - a session that cannot shut down must not break the server
        pass


if _TTLCache is not None:
    class ShutdownOnExpiryCache(_TTLCache):
        """Streamlit's TTL cache that shuts a session down when it drops it on its own (expiry
        or overflow); an explicit delete (a reconnect resuming it, or a close that shuts it
        down itself) is left alone."""

        def expire(self, at_time=None):
            removed = super().expire(at_time)
            for _key, info in removed:
                _shut_down(info)
            return removed

        def _evict_lru(self, reason):
            info = super()._evict_lru(reason)
            _shut_down(info)
            return info


def install() -> bool:
    """Install `ShutdownOnExpiryCache` as the server's store of disconnected sessions (once
    per process; later calls find it in place). False under AppTest or pytest (no server),
    and on a Streamlit whose internals differ (logged once). True when it is in place."""
    from streamlit import runtime

    if not runtime.exists():
        return False
    manager = getattr(runtime.get_instance(), "_session_mgr", None)
    storage = getattr(manager, "_session_storage", None)
    cache, lock = getattr(storage, "_cache", None), getattr(manager, "_storage_lock", None)
    if _TTLCache is not None and isinstance(cache, ShutdownOnExpiryCache):
        return True
    if _TTLCache is None or type(cache) is not _TTLCache or lock is None:
        if not getattr(install, "_warned", False):
            install._warned = True
            _LOG.warning("closed sessions are not shut down on expiry: this Streamlit's session store "
                         "is not the one app/session_expiry.py knows (Streamlit 1.67)")
        return False
    with lock:
        fresh = ShutdownOnExpiryCache(maxsize=cache.maxsize, ttl=cache.ttl)
        for key, info in cache.items():
            fresh[key] = info
        storage._cache = fresh
    return True
