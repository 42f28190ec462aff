"""Hand freed heap memory back to the operating system.

A long-lived dashboard server decodes, crops and scores many images; glibc's malloc keeps
the freed pages of those short-lived buffers (per-thread arenas, and Streamlit runs every
session in its own thread), so resident memory drifts up although nothing is leaked.
`malloc_trim(0)` returns those pages. Elsewhere (macOS, musl) it is a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; True when glibc released something."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def rss_mib() -> float | None:
    """This process's resident memory in MiB (Linux /proc), None where unknown."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
