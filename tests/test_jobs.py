"""detector.jobs: heavy jobs run one at a time in the server process (#27).

Two people starting a heavy job at once must not both get the CPU: the second waits (and its
page is told so) until the first is done, then runs; neither fails. A full queue refuses a
job instead of piling up, and a waiting page that is stopped leaves the queue.
"""
from __future__ import annotations

import threading
import time

import pytest

from detector import jobs


@pytest.fixture(autouse=True)
def one_slot():
    jobs.configure(running=1, waiting=8)
    yield
    jobs.configure(running=jobs.MAX_RUNNING, waiting=jobs.MAX_WAITING)
    assert jobs.running() == [] and jobs.waiting() == 0


def _job(name: str, log: list, hold: threading.Event | None, messages: list, errors: list):
    try:
        with jobs.heavy_job(name, on_wait=messages.append, poll_s=0.05):
            log.append(("start", name, time.perf_counter()))
            if hold is not None:
                assert hold.wait(10)
            log.append(("end", name, time.perf_counter()))
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_second_heavy_job_waits_for_the_first_and_both_finish():
    log, errors, first_msgs, second_msgs = [], [], [], []
    release = threading.Event()
    first = threading.Thread(target=_job, args=("first", log, release, first_msgs, errors))
    first.start()
    deadline = time.time() + 5
    while jobs.running() != ["first"] and time.time() < deadline:
        time.sleep(0.01)
    second = threading.Thread(target=_job, args=("second", log, None, second_msgs, errors))
    second.start()
    deadline = time.time() + 5
    while not second_msgs and time.time() < deadline:
        time.sleep(0.01)
    # the second is queued, told why, and has not started while the first runs
    assert jobs.waiting() == 1 and jobs.running() == ["first"]
    assert second_msgs and "Waiting for another job to finish (first)" in second_msgs[0]
    assert [e[1] for e in log if e[0] == "start"] == ["first"]
    release.set()
    first.join(10)
    second.join(10)
    assert not errors, errors
    assert not first_msgs  # the first found a free slot
    order = [(kind, name) for kind, name, _ in log]
    assert order == [("start", "first"), ("end", "first"), ("start", "second"), ("end", "second")]


def test_waiting_jobs_go_in_order_and_a_full_queue_refuses():
    jobs.configure(waiting=2)
    log, errors, msgs = [], [], {n: [] for n in "abc"}
    release = threading.Event()
    holder = threading.Thread(target=_job, args=("holder", log, release, [], errors))
    holder.start()
    while jobs.running() != ["holder"]:
        time.sleep(0.01)
    waiters = []
    for name in "ab":
        t = threading.Thread(target=_job, args=(name, log, None, msgs[name], errors))
        t.start()
        waiters.append(t)
        while not msgs[name]:
            time.sleep(0.01)
    assert jobs.waiting() == 2
    assert "1 job(s) ahead" in msgs["b"][-1]
    with pytest.raises(jobs.JobsBusy, match="busy"):
        with jobs.heavy_job("c"):
            pass
    release.set()
    for t in (holder, *waiters):
        t.join(10)
    assert not errors, errors
    assert [name for kind, name, _ in log if kind == "start"] == ["holder", "a", "b"]


def test_a_stopped_waiting_page_leaves_the_queue():
    class Stopped(Exception):
        pass

    def stop(_message):
        raise Stopped  # Streamlit raises in a page's thread when its user stops or reruns it

    release = threading.Event()
    holder = threading.Thread(target=_job, args=("holder", [], release, [], []))
    holder.start()
    while jobs.running() != ["holder"]:
        time.sleep(0.01)
    with pytest.raises(Stopped):
        with jobs.heavy_job("stopped", on_wait=stop):
            pytest.fail("ran without a slot")
    assert jobs.waiting() == 0
    release.set()
    holder.join(10)
    with jobs.heavy_job("after"):  # the slot is free again
        assert jobs.running() == ["after"]


def test_a_failing_job_frees_its_slot():
    with pytest.raises(ValueError):
        with jobs.heavy_job("fails"):
            raise ValueError("bad folder")
    assert jobs.running() == []
    with jobs.heavy_job("next"):
        assert jobs.running() == ["next"]
