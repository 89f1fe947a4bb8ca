"""Runtime services shared by every face: the progress/cancel protocol, device choice and seeding.

Every long job is a generator that yields :class:`Progress` events and *returns* its result. The CLI drives a job
with :func:`run_job`; a napari widget drives the same generator with ``thread_worker`` (``quit()`` stops it between
yields). Jobs keep finished work in the objects they were given (for example a preallocated output volume), so
closing a generator early loses nothing that was finished.

Inside :func:`stop_signals` (the CLI runs every command in it), Ctrl-C, SIGTERM (``timeout``, ``docker stop``, a
cluster's time limit) and SIGHUP all stop the same way: a running job stops at its next progress step by raising
:class:`Stopped` (a ``KeyboardInterrupt``), so its cleanup runs and the face keeps what was finished; outside a job the
signal raises at once; a second signal while a job is still working on its step raises at once; signals that arrive
while a stop is being cleaned up are ignored, so the cleanup is never cut short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One progress event: ``step`` of ``total`` done, a human message and an optional partial result."""

    step: int
    total: int
    message: str = ""
    partial: Any = None

    @property
    def fraction(self) -> float:
        """Fraction done in [0, 1] (0 when the total is unknown)."""
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)


Job = Generator[Progress, None, T]
"""A long-running computation: yields :class:`Progress`, returns its result."""


class Cancelled(RuntimeError):
    """Raised by :func:`run_job` when ``should_stop`` asked the job to stop; finished work stays where it was put."""


class Stopped(KeyboardInterrupt):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP) raised like Ctrl-C, so every face keeps finished work the same way."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"stopped by {signal_name(self.signum)}")


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15 and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def interrupt_exit_code(exc: BaseException) -> int:
    """The shell's exit status of a process stopped by a signal: 128 + its number (130 Ctrl-C, 143 SIGTERM, 129
    SIGHUP); a plain ``KeyboardInterrupt`` counts as Ctrl-C."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


class _StopState:
    def __init__(self) -> None:
        self.requested: int | None = None  # a signal that arrived while a job ran: stop at its next step
        self.raised = False  # a Stopped is on its way up: cleanup runs, further signals are ignored
        self.jobs = 0

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.raised:
            return
        if self.jobs and self.requested is None:
            self.requested = signum
            return
        self.raised = True
        raise Stopped(signum)

    def check(self) -> None:
        if self.requested is not None and not self.raised:
            self.raised = True
            raise Stopped(self.requested)


_STOP = _StopState()


@contextmanager
def _signal_handlers(handler: Callable[[int], Any]) -> Iterator[None]:
    """Install ``handler(signum)`` for each of :data:`STOP_SIGNALS` while the block runs, then put the previous
    handlers back; a no-op outside the main thread (Python only lets it set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, handler(signum))
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Handle Ctrl-C, SIGTERM and SIGHUP as described in the module docstring while the block runs (main thread only;
    elsewhere a no-op). The previous handlers come back afterwards."""
    global _STOP
    outer, _STOP = _STOP, _StopState()
    state = _STOP
    try:
        with _signal_handlers(lambda signum: state.on_signal):
            yield
    finally:
        _STOP = outer


@contextmanager
def default_signals() -> Iterator[None]:
    """Give the stop signals their default handlers while the block runs (e.g. napari's event loop, which handles
    Ctrl-C itself and whose widgets handle SIGTERM/SIGHUP while a job runs); the previous handlers come back after."""
    with _signal_handlers(lambda signum: signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL):
        yield


def run_job(
    job: Job[T],
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> T:
    """Drive ``job`` to completion and return its result.

    ``on_progress`` sees every event; when ``should_stop()`` turns true the generator is closed (its ``finally``
    blocks run) and :class:`Cancelled` is raised. Anything raised on the consumer's side (an error in
    ``on_progress``, Ctrl-C) also closes the job before it propagates, so the job's cleanup always runs. Under
    :func:`stop_signals`, a stop signal raises :class:`Stopped` after the job's next event.
    """
    state = _STOP
    state.jobs += 1
    try:
        while True:
            event = next(job)
            if on_progress is not None:
                on_progress(event)
            state.check()
            if should_stop is not None and should_stop():
                raise Cancelled("stopped on request; finished work was kept")
    except StopIteration as stop:
        return stop.value
    except BaseException:
        job.close()
        raise
    finally:
        state.jobs -= 1


def sub_job(job: Job[T], offset: int, total: int, prefix: str = "") -> Generator[Progress, None, T]:
    """Re-yield a nested job's events shifted by ``offset`` steps into an outer count of ``total``."""
    try:
        while True:
            event = next(job)
            message = f"{prefix}{event.message}" if prefix else event.message
            yield Progress(offset + event.step, total, message, event.partial)
    except StopIteration as stop:
        return stop.value


def make_rng(seed: int | None) -> np.random.Generator:
    """A numpy generator for ``seed`` (``None`` draws fresh entropy)."""
    return np.random.default_rng(seed)


def available_devices() -> list[str]:
    """Devices usable here, best first; ``cpu`` is always present. Imports torch lazily (absent torch → cpu only)."""
    devices = ["cpu"]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a declared dependency
        return devices
    if torch.backends.mps.is_available():
        devices.insert(0, "mps")
    if torch.cuda.is_available():
        devices.insert(0, "cuda")
    return devices


def pick_device(requested: str = "auto") -> str:
    """Resolve ``auto`` to the best device (cuda > mps > cpu); an explicit unavailable device is a clear error."""
    requested = (requested or "auto").lower()
    devices = available_devices()
    if requested == "auto":
        return devices[0]
    base = requested.split(":")[0]
    if base not in devices:
        raise ValueError(f"device {requested!r} is not available here; choose one of {['auto', *devices]}")
    return requested


def expected_total(iterations: int | None, done: int, seconds: float, budget_s: float | None) -> int:
    """A training's iteration count as its budget allows (the progress bar's total): the ``iterations`` limit, or what
    the speed so far (``done`` in ``seconds``) reaches within ``budget_s``, whichever is smaller."""
    totals = []
    if iterations is not None:
        totals.append(int(iterations))
    if budget_s is not None and seconds > 0:
        totals.append(max(done, int(done * budget_s / seconds)))
    return min(totals) if totals else 0


def checked_slices(slices: Any, depth: int) -> list[int]:
    """The slice indices as ints, after checking there is at least one and all lie in a volume of ``depth`` slices."""
    checked = [int(z) for z in slices]
    if not checked:
        raise ValueError("no training slices given")
    bad = [z for z in checked if not 0 <= z < depth]
    if bad:
        raise ValueError(f"slices {bad[:5]} are outside the volume of {depth} slices")
    return checked
