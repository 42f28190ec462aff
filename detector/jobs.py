"""One heavy job at a time in this process: a server-wide limit on CPU-heavy work.

The dashboard runs every browser session in its own thread of one server process. Without
a limit, a few people each scoring a labelled folder, auditing a dataset or drawing a
learning curve at once share the CPU cores between them, every job slows down in
proportion, and the server stops answering. Here every heavy job takes a slot of one
process-wide semaphore (`heavy_job`): with the default of one slot, a second job waits
until the first is done, and its page says so (`on_wait` is called while it waits).
Jobs that come in while `MAX_WAITING` others already wait are refused with `JobsBusy`
instead of piling up.

Settings (environment, read when this module is first imported):

* `DEEPFAKE_LAB_JOBS`: heavy jobs that may run at once (default 1).
* `DEEPFAKE_LAB_JOB_QUEUE`: jobs that may wait for a slot (default 8); more are refused.
* `DEEPFAKE_LAB_JOB_MAX_FILES`: files one heavy job started from the web app may read
  (`WEB_MAX_FILES`, default 2000); the command line has no such cap.

Heavy jobs: scoring a labelled zip or folder (Compare), a data audit and a learning curve
(Training), a generalisation run (`detector.generalization.run`). Single-image scoring on
the Detect page is not a job: it is quick and bounded by the upload limits.
No Streamlit here: a page passes `on_wait` to show its own message.
"""
from __future__ import annotations

import collections
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

JOBS_ENV = "DEEPFAKE_LAB_JOBS"
QUEUE_ENV = "DEEPFAKE_LAB_JOB_QUEUE"
WAIT_POLL_S = 0.5  # how often a waiting job calls `on_wait` again (a page can be interrupted then)


def _env_int(name: str, default: int, minimum: int) -> int:
    try:
        return max(minimum, int(os.environ.get(name, default)))
    except ValueError:
        return default


MAX_RUNNING = _env_int(JOBS_ENV, 1, 1)
MAX_WAITING = _env_int(QUEUE_ENV, 8, 0)
MAX_FILES_ENV = "DEEPFAKE_LAB_JOB_MAX_FILES"
WEB_MAX_FILES = _env_int(MAX_FILES_ENV, 2000, 1)
"""Images one heavy job started from the web app reads at most: the labelled set scored on
Compare (the first ones in the zip's or folder's order; the page says how many were left
out), a data audit and a learning curve's source (refused above it, with the CLI command to
run instead). Scoring 2,000 images with the five preselected models takes about two minutes
on two cores, during which other heavy jobs wait."""


class JobsBusy(RuntimeError):
    """Too many jobs already wait for a slot: try again later."""


class _Slots:
    """A counting semaphore with a first-come-first-served queue, that knows what runs and
    how many wait (for the messages)."""

    def __init__(self, running: int, waiting: int):
        self.max_running, self.max_waiting = running, waiting
        self._cond = threading.Condition()
        self.running: list[str] = []
        self.queue: collections.deque = collections.deque()  # tickets of the waiting jobs, oldest first

    @property
    def waiting(self) -> int:
        return len(self.queue)

    def _free(self) -> bool:
        return len(self.running) < self.max_running


_slots = _Slots(MAX_RUNNING, MAX_WAITING)


def configure(running: int | None = None, waiting: int | None = None) -> None:
    """Change the limits (tests; a server reads them from the environment)."""
    with _slots._cond:
        if running is not None:
            _slots.max_running = max(1, int(running))
        if waiting is not None:
            _slots.max_waiting = max(0, int(waiting))
        _slots._cond.notify_all()


def running() -> list[str]:
    """Names of the jobs that hold a slot now."""
    with _slots._cond:
        return list(_slots.running)


def waiting() -> int:
    """How many jobs wait for a slot now."""
    with _slots._cond:
        return _slots.waiting


def waiting_text(names: list[str], ahead: int) -> str:
    """The message a waiting page shows."""
    what = ", ".join(names) if names else "another job"
    queue = f"; {ahead} job(s) ahead in the queue" if ahead else ""
    return f"Waiting for another job to finish ({what}){queue}: heavy jobs run one at a time on this server."


@contextmanager
def heavy_job(name: str, on_wait: Callable[[str], None] | None = None,
              poll_s: float = WAIT_POLL_S) -> Iterator[None]:
    """Hold one of the process's heavy-job slots for the `with` block.

    When none is free, `on_wait(message)` is called at once and then every `poll_s` seconds
    until one is; an exception it raises (a Streamlit page stopped or rerun by its user)
    leaves the queue cleanly. Raises `JobsBusy` when `MAX_WAITING` jobs already wait."""
    s = _slots
    with s._cond:
        if not s._free() or s.queue:  # first come, first served: no overtaking a waiting job
            if s.waiting >= s.max_waiting:
                raise JobsBusy(f"the server is busy: {len(s.running)} job(s) running and {s.waiting} waiting; "
                               "try again in a few minutes")
            ticket = object()
            s.queue.append(ticket)
            try:
                while not (s._free() and s.queue[0] is ticket):
                    if on_wait is not None:
                        message = waiting_text(list(s.running), s.queue.index(ticket))
                        s._cond.release()  # the page's callback must not run under the lock
                        try:
                            on_wait(message)
                        finally:
                            s._cond.acquire()
                        if s._free() and s.queue[0] is ticket:
                            break
                    s._cond.wait(timeout=poll_s)
            finally:
                s.queue.remove(ticket)
                s._cond.notify_all()  # the next in the queue may go now (or the one behind a leaver)
        s.running.append(name)
    try:
        yield
    finally:
        with s._cond:
            s.running.remove(name)
            s._cond.notify_all()
