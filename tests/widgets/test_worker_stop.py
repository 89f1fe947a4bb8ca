"""A job in a dock widget stops cleanly when napari closes (its workers are quit) and on SIGTERM/SIGHUP."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from napari.qt.threading import WorkerBase

from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.widgets._worker import JobPanel, received_stop_signal, stop_all_jobs

WAIT_MS = 120_000  # how long a test waits for a worker: a bound for a stuck run, not a timing claim


def slow_job(log: list[str], started: threading.Event, n: int = 200) -> Job[int]:
    """Steps of 20 ms; records its cleanup and the thread that ran it."""
    try:
        for step in range(1, n + 1):
            time.sleep(0.02)
            started.set()
            yield Progress(step, n, f"step {step}")
        return n
    finally:
        log.append(threading.current_thread().name)


def test_quitting_the_workers_runs_the_jobs_cleanup_at_once(qtbot) -> None:
    """What napari does when its window closes: quit every worker and wait. The job's cleanup (a checkpoint, the
    finished slices) must have run when that wait returns — not later, when the GUI thread gets to it, if ever."""
    panel = JobPanel()
    qtbot.addWidget(panel)
    log: list[str] = []
    started = threading.Event()
    panel.start(slow_job(log, started), desc="slow")
    assert started.wait(30)
    WorkerBase.await_workers(msecs=30_000)
    assert len(log) == 1 and log[0] != threading.main_thread().name  # cleaned up, in the worker thread
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_cancel_running_jobs_like_ctrl_c(qtbot, signum: int) -> None:
    if signal.getsignal(signum) not in (signal.SIG_DFL, None):
        pytest.skip("another handler owns this signal in the test process")
    panel = JobPanel()
    qtbot.addWidget(panel)
    log: list[str] = []
    started = threading.Event()
    panel.start(slow_job(log, started), desc="slow")
    assert signal.getsignal(signum) is stop_all_jobs  # installed while a job runs
    assert started.wait(30)
    signal.raise_signal(signum)
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)
    assert log and panel.status.text() == "cancelled" and panel.last_progress.step < 200
    assert received_stop_signal() == signum
    assert signal.getsignal(signum) is signal.SIG_DFL  # handed back once no job runs
