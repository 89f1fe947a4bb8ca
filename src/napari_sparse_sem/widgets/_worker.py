"""Run a core job (a generator of :class:`~napari_sparse_sem.runtime.Progress`) off the GUI thread.

:class:`JobPanel` is the strip every dock widget shares: a Run button, a progress bar, a Cancel button and a status
line. It drives the job with napari's generator ``thread_worker`` machinery, so the Qt event loop keeps running, the
activity dock shows a napari progress bar, and Cancel (``worker.quit()``) stops the job between two yields. Progress
events are delivered on the GUI thread, which is where widgets may touch layers.

A stopped job is closed in its worker thread as soon as the worker ends (:class:`JobWorker`), so its cleanup (a
checkpoint, the finished slices, released GPU memory) also runs when napari quits the workers because the viewer is
closing. While a job runs, SIGTERM and SIGHUP (``kill``, a logout, a cluster's time limit) are handled like Ctrl-C in
napari: every running job is cancelled at its next step, its cleanup runs, then the windows close
(:func:`stop_all_jobs`).
"""

from __future__ import annotations

import signal
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import QApplication, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from napari_sparse_sem import runtime
from napari_sparse_sem.runtime import Job, Progress

ERROR_STYLE = "color: #ff7070;"
OK_STYLE = ""
REFRESH_S = 0.1  # an iterative fit reports every iteration: the bars and the status line follow at most this often


def _drive(job: Job[Any]) -> Generator[Progress, None, Any]:
    """The worker's generator: re-yield the job's events and return its result."""
    return (yield from job)


class JobWorker(GeneratorWorker):
    """A generator worker that closes its generator in the worker thread when it ends, however it ends.

    napari's own worker leaves a quit generator suspended until it is garbage collected; a job's cleanup (saving a
    checkpoint, keeping finished slices) must not wait for that — least of all when the viewer closes and napari
    quits every worker."""

    def work(self) -> Any:
        try:
            return super().work()
        finally:
            self._gen.close()


_RUNNING: weakref.WeakSet[JobPanel] = weakref.WeakSet()
_PREVIOUS_HANDLERS: dict[int, Any] = {}
_RECEIVED: list[int] = []
STOP_SIGNALS = tuple(signum for signum in runtime.STOP_SIGNALS if signum != signal.SIGINT)  # napari owns Ctrl-C


def stop_all_jobs(signum: int | None = None, frame: Any = None) -> int:
    """Cancel every running job (each stops at its next step and keeps what it finished), then close the windows so
    napari quits the way it does on Ctrl-C. The handler of SIGTERM/SIGHUP while a job runs; returns the jobs asked."""
    panels = [panel for panel in list(_RUNNING) if panel.busy]
    if signum is not None:
        _RECEIVED.append(int(signum))
    for panel in panels:
        panel.cancel()
    if signum is not None:
        QTimer.singleShot(0, QApplication.closeAllWindows)
    return len(panels)


def received_stop_signal() -> int | None:
    """The last SIGTERM/SIGHUP that stopped the jobs of this session (for the exit status of a launcher), or None."""
    return _RECEIVED[-1] if _RECEIVED else None


def _install_stop_handlers() -> None:
    """Handle SIGTERM/SIGHUP with :func:`stop_all_jobs` while jobs run (main thread; only where nobody else did)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        if signum not in _PREVIOUS_HANDLERS and signal.getsignal(signum) in (signal.SIG_DFL, None):
            _PREVIOUS_HANDLERS[signum] = signal.getsignal(signum)
            signal.signal(signum, stop_all_jobs)


def _restore_stop_handlers() -> None:
    if any(panel.busy for panel in list(_RUNNING)) or threading.current_thread() is not threading.main_thread():
        return
    for signum, handler in list(_PREVIOUS_HANDLERS.items()):
        if signal.getsignal(signum) is stop_all_jobs:
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        del _PREVIOUS_HANDLERS[signum]


def error_text(exc: BaseException) -> str:
    """A one-line message for the user: our ValueErrors already say what to do, others get their type name."""
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class JobPanel(QWidget):
    """Run / Cancel buttons, a progress bar and a status line; runs one job at a time in a worker thread.

    ``finished`` is emitted on the GUI thread after a job ended (done, cancelled or failed) and its callbacks ran.
    Every event reaches the job's ``on_progress`` callback; the progress bars and the status line are refreshed when
    the step changes or :data:`REFRESH_S` has passed, so a job that reports each iteration does not flood the GUI.
    """

    finished = Signal()

    def __init__(self, run_text: str = "Run", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop after the current step; finished results are kept")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%v / %m")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        self.cancel_button.clicked.connect(self.cancel)

        self.worker: GeneratorWorker | None = None
        self.last_progress: Progress | None = None
        self._job: Job[Any] | None = None
        self._pbar: napari_progress | None = None
        self._failed = False
        self._discarded = False
        self._shown: tuple[int, float] = (-1, 0.0)  # the step shown and when (see REFRESH_S)
        self._callbacks: dict[str, Callable[..., None] | None] = {}
        # Python runs signal handlers only when the main thread runs Python code: tick while a job runs.
        self._signal_tick = QTimer(self)
        self._signal_tick.setInterval(250)
        self._signal_tick.timeout.connect(lambda: None)

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a job is running (until its ``finished`` handling is done)."""
        return self.worker is not None

    def set_status(self, text: str) -> None:
        """Show an ordinary status message."""
        self.status.setStyleSheet(OK_STYLE)
        self.status.setText(text)

    def show_error(self, text: str, notify: bool = True) -> None:
        """Show ``text`` as an error in the widget (and as a napari notification)."""
        self.status.setStyleSheet(ERROR_STYLE)
        self.status.setText(text)
        if notify:
            show_error(text)

    def notify(self, text: str) -> None:
        """Status line plus a napari info notification (for results worth a pop-up)."""
        self.set_status(text)
        show_info(text)

    # -- running -------------------------------------------------------------------------------------------------
    def start(
        self,
        job: Job[Any],
        *,
        desc: str,
        on_progress: Callable[[Progress], None] | None = None,
        on_returned: Callable[[Any], None] | None = None,
        on_aborted: Callable[[], None] | None = None,
        on_errored: Callable[[BaseException], None] | None = None,
    ) -> GeneratorWorker:
        """Run ``job`` in a worker thread; the callbacks run on the GUI thread."""
        if self.busy:
            raise RuntimeError("a job is already running; cancel it or wait for it to finish")
        self._job = job
        self._callbacks = {
            "progress": on_progress,
            "returned": on_returned,
            "aborted": on_aborted,
            "errored": on_errored,
        }
        self.last_progress = None
        self._failed = False
        self._discarded = False
        self._shown = (-1, 0.0)
        self._pbar = napari_progress(total=0, desc=desc)
        self.progress_bar.setRange(0, 0)  # busy indicator until the first event tells the total
        self.set_status(f"{desc}…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)

        worker = create_worker(_drive, job, _ignore_errors=True, _start_thread=False, _worker_class=JobWorker)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        # Not a bound method: Qt drops those when the panel is deleted (its viewer closed mid-run), and the job's
        # bookkeeping (its napari progress bar, the stop-signal handlers) must still be released then.
        panel = weakref.ref(self)
        worker.finished.connect(lambda: _finish(panel))
        self.worker = worker
        _RUNNING.add(self)
        _install_stop_handlers()
        self._signal_tick.start()
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running job to stop after its current step (finished work is kept)."""
        if self.worker is not None:
            self.cancel_button.setEnabled(False)
            self.set_status("cancelling after the current step…")
            self.worker.quit()

    def discard(self) -> None:
        """Cancel the running job and drop everything it still reports: no callback of the widget runs any more (its
        widget is closing). The job's own cleanup still runs in its worker thread."""
        if self.worker is None:
            return
        self._discarded = True
        self._callbacks = {}
        self.cancel()

    # -- worker signals (GUI thread) -------------------------------------------------------------------------------
    def _on_yielded(self, event: Progress) -> None:
        if not isinstance(event, Progress):
            return
        self.last_progress = event
        total = max(int(event.total), 0)
        now = time.monotonic()
        if int(event.step) == self._shown[0] and now - self._shown[1] < REFRESH_S:
            self._call("progress", event)
            return
        self._shown = (int(event.step), now)
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(int(event.step), total))
        if event.message and self.cancel_button.isEnabled():
            self.set_status(event.message)
        self._call("progress", event)
        # Last: napari's progress widgets call processEvents(), so later events (even ``finished``) may be handled
        # inside these calls; nothing after them may rely on this job still running.
        pbar = self._pbar
        if pbar is None:
            return
        if pbar.total != total:
            pbar.total = total
        if self._pbar is pbar and int(event.step) != int(pbar.n):
            pbar.update(int(event.step) - int(pbar.n))
        if self._pbar is pbar and event.message:
            pbar.set_description(event.message)

    def _on_returned(self, result: Any) -> None:
        if self._discarded:
            return
        self.progress_bar.setValue(self.progress_bar.maximum())
        self.set_status("done")
        self._call("returned", result)

    def _on_aborted(self) -> None:
        if self._failed or self._discarded:  # stopped because a handler failed: keep its error message
            return
        self.set_status("cancelled")
        self._call("aborted")

    def _on_errored(self, exc: BaseException) -> None:
        self._failed = True
        if self._discarded:
            return
        callback = self._callbacks.get("errored")
        if callback is not None:
            callback(exc)
        else:
            self.show_error(error_text(exc))

    def _call(self, name: str, *args: Any) -> None:
        callback = self._callbacks.get(name)
        if callback is None:
            return
        try:
            callback(*args)
        except Exception as exc:  # a failing handler must not kill the GUI; stop the job instead
            self._failed = True
            if name == "progress" and self.worker is not None:
                self.worker.quit()
            self.show_error(error_text(exc))

    def _release(self) -> None:
        """The job's bookkeeping, without touching a Qt object (the panel may be deleted already)."""
        job, pbar = self._job, self._pbar
        self._job = None
        self._pbar = None
        self._callbacks = {}
        self.worker = None
        # The worker closed the job already (JobWorker); closing again is a no-op, and covers a job never started.
        if job is not None:
            job.close()
        if pbar is not None:
            pbar.close()
        _RUNNING.discard(self)
        _restore_stop_handlers()

    def _on_finished(self) -> None:
        self._release()
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._signal_tick.stop()
        self.finished.emit()


def _finish(ref: weakref.ReferenceType[JobPanel]) -> None:
    """A job's worker ended: let its panel tidy up (only the bookkeeping when the panel's Qt side is gone)."""
    panel = ref()
    if panel is None:
        return
    try:
        panel.objectName()
    except RuntimeError:  # "wrapped C/C++ object … has been deleted"
        panel._release()
        return
    panel._on_finished()
