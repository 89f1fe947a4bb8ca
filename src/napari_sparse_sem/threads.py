"""CPU threads: the one place that sets how many threads torch, numba and the BLAS libraries use.

How many (:func:`thread_count`): a number asked for (``--threads N``, a widget's *threads* field) wins; ``0``/None
means auto, which is ``OMP_NUM_THREADS`` when the environment sets it, else the cores this process may use
(:func:`usable_cores`: its CPU affinity, e.g. a ``taskset``, a container's or a batch job's CPU set — not the
machine's count) less those another process keeps busy right now (:func:`idle_cores`, measured over 0.1 s from
``/proc/stat`` on Linux). So the order is ``--threads`` > ``OMP_NUM_THREADS`` > idle usable cores. The count is
chosen when a job starts and kept for it: a job that started beside a busy process stays at the smaller count.

Why it matters: a thread pool larger than the cores it really gets — or one that shares them with another busy
process — makes torch's and numba's workers wait for each other (measured on 2 cores beside one busy process: a DIP
fit 10x slower with the default threads than with one; ``benchmarks/threads.py``).

:func:`set_threads` sets, from the calling thread:

* torch's intra-op threads: for the calling thread and as the count every thread that starts torch work later
  begins with (torch's OpenMP builds keep the count per thread once a thread ran torch work, so a job in a worker
  thread leaves napari's own thread alone; builds without OpenMP have one count for the process). Its inter-op pool
  only at the first call of the process, the one time torch allows it.
* numba's threads: for the calling thread (numba keeps the count per thread), at most the pool numba started with
  (``NUMBA_NUM_THREADS``).
* the BLAS libraries loaded so far (through threadpoolctl): process-wide.

It imports torch and numba when they are not imported yet, so the counts hold for work that imports them later.
:func:`limited_threads` sets them for a block and puts the previous counts back afterwards; :func:`with_threads` does
that around a job (the widgets' jobs run in it). Two jobs running at once share the BLAS count set last.
:func:`worker_thread_share` splits cores between the local workers of a cluster (``cluster/connect.py``).

This module imports neither torch nor numba at import time.
"""

from __future__ import annotations

import math
import operator
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from napari_sparse_sem.runtime import Job

__all__ = [
    "THREAD_VARIABLES",
    "ThreadSettings",
    "auto_threads",
    "current_threads",
    "describe",
    "env_threads",
    "free_cores",
    "idle_cores",
    "limited_threads",
    "restore_threads",
    "set_threads",
    "thread_count",
    "usable_cores",
    "with_threads",
    "worker_thread_share",
]

ENV = "OMP_NUM_THREADS"
"""The environment variable whose value is the auto count when set (OpenMP's, which torch reads too)."""
THREAD_VARIABLES = (ENV, "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
"""The environment variables a new process reads its thread counts from (OpenMP/torch, MKL, OpenBLAS, numba)."""
T = TypeVar("T")
_INTEROP: list[int] = []  # the inter-op pool size set at the first set_threads (torch allows it once)


def usable_cores() -> int:
    """The CPU cores this process may use: its CPU affinity (``os.sched_getaffinity``), else ``os.cpu_count()``
    (macOS, Windows); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def _cpu_times(stat: str) -> dict[int, tuple[int, int]]:
    """(idle + iowait, total) jiffies per CPU number from the text of ``/proc/stat``."""
    times = {}
    for line in stat.splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(values) >= 5:
            numbers = [int(v) for v in values[:8]]
            times[int(name[3:])] = (numbers[3] + numbers[4], sum(numbers))
    return times


def free_cores(before: str, after: str, cpus: set[int] | list[int]) -> float | None:
    """How many of ``cpus`` were idle between two readings of ``/proc/stat`` (a sum of idle fractions), or None when
    the readings do not cover those CPUs or no time passed."""
    first, second = _cpu_times(before), _cpu_times(after)
    if not cpus or any(c not in first or c not in second for c in cpus):
        return None
    total = 0.0
    for c in cpus:
        idle = second[c][0] - first[c][0]
        elapsed = second[c][1] - first[c][1]
        if elapsed <= 0:
            return None
        total += min(1.0, max(0.0, idle / elapsed))
    return total


def idle_cores(seconds: float = 0.1) -> float | None:
    """The usable cores no process kept busy over the next ``seconds`` (Linux, from ``/proc/stat``), or None where
    that cannot be read (other systems, a ``/proc`` that does not list this process's CPUs)."""
    try:
        cpus = os.sched_getaffinity(0)
        path = Path("/proc/stat")
        before = path.read_text()
        time.sleep(seconds)
        after = path.read_text()
    except (AttributeError, OSError):
        return None
    return free_cores(before, after, cpus)


def auto_threads() -> int:
    """The automatic count without ``OMP_NUM_THREADS``: the usable cores, less the ones another process keeps busy
    right now (idle fractions summed, rounded down with a quarter core of slack), at least 1."""
    cores = usable_cores()
    idle = idle_cores()
    if idle is None:
        return cores
    return max(1, min(cores, math.floor(idle + 0.25)))


def env_threads() -> int | None:
    """The thread count ``OMP_NUM_THREADS`` sets (its first value: ``4,2`` reads as 4), or None when it is unset or
    not a positive whole number."""
    text = os.environ.get(ENV, "").split(",")[0].strip()
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 1 else None


def thread_count(requested: int | None = None) -> int:
    """The threads to use: ``requested`` when it is a positive number (a warning when it exceeds the usable
    cores — allowed, but the threads then compete for cores), else (0 or None: auto) ``OMP_NUM_THREADS`` when set,
    else :func:`auto_threads` (the usable cores not busy elsewhere). A negative or fractional ``requested`` is a
    ``ValueError``."""
    if requested is not None:
        if isinstance(requested, bool):
            raise ValueError(f"threads must be a whole number (0: auto), got {requested!r}")
        try:
            requested = operator.index(requested)
        except TypeError:
            if isinstance(requested, float) and requested.is_integer():
                requested = int(requested)
            else:
                raise ValueError(f"threads must be a whole number (0: auto), got {requested!r}") from None
        if requested < 0:
            raise ValueError(f"threads must be 0 (auto: the usable cores) or a positive number, got {requested}")
    if requested:
        cores = usable_cores()
        if requested > cores:
            warnings.warn(
                f"{requested} threads on {cores} usable core(s): the threads compete for the cores, which is usually "
                "slower, not faster",
                RuntimeWarning,
                stacklevel=2,
            )
        return requested
    return env_threads() or auto_threads()


def worker_thread_share(cores: int, workers: int) -> list[int]:
    """``cores`` split between ``workers`` as evenly as whole numbers go (the first workers take the remainder), at
    least one thread each: ``worker_thread_share(5, 2) == [3, 2]``, ``worker_thread_share(2, 3) == [1, 1, 1]``."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    base, extra = divmod(max(1, int(cores)), workers)
    return [max(1, base + (1 if index < extra else 0)) for index in range(workers)]


@dataclass
class ThreadSettings:
    """Thread counts as set at one moment: torch's intra-op threads and numba's (both for the calling thread), each
    loaded BLAS library's by file path. None: the library is not installed."""

    torch: int | None
    numba: int | None
    blas: dict[str, int] = field(default_factory=dict)


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch


def _numba() -> Any:
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    return numba


def _blas_threads() -> dict[str, int]:
    from threadpoolctl import threadpool_info

    return {info["filepath"]: int(info["num_threads"]) for info in threadpool_info() if info["user_api"] == "blas"}


def current_threads() -> ThreadSettings:
    """The thread counts set now (torch's and numba's: those of the calling thread)."""
    torch, numba = _torch(), _numba()
    return ThreadSettings(
        torch=torch.get_num_threads() if torch is not None else None,
        numba=numba.get_num_threads() if numba is not None else None,
        blas=_blas_threads(),
    )


def _apply(settings: ThreadSettings) -> None:
    from threadpoolctl import threadpool_limits

    torch, numba = _torch(), _numba()
    if torch is not None and settings.torch is not None:
        torch.set_num_threads(settings.torch)
    if numba is not None and settings.numba is not None:
        numba.set_num_threads(max(1, min(settings.numba, numba.config.NUMBA_NUM_THREADS)))
    if settings.blas:
        threadpool_limits(limits=dict(settings.blas))
        _release_blas_control()


def _release_blas_control() -> None:
    """Let the next thread change the BLAS count too. OpenBLAS without OpenMP has one pool for the process, and
    threadpoolctl (3.8) lets only one thread at a time set it — the first to try, until it hands control back (which
    ``with threadpool_limits`` does at its end); other threads' calls silently do nothing. Our changes are whole
    settings, not blocks left open, so we hand it back after each: the last one set holds, from any thread."""
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None:  # older threadpoolctl: no controlling thread
        clear()


def restore_threads(settings: ThreadSettings) -> None:
    """Put back counts that :func:`current_threads` or :func:`set_threads` returned (from the thread that read
    them)."""
    _apply(settings)


def set_threads(n: int) -> ThreadSettings:
    """Use ``n`` threads (>= 1) in torch, numba and the BLAS libraries from now on; returns the settings before.

    torch's count holds for the calling thread and for threads that start torch work later; its inter-op pool is sized
    ``n`` at the first call of the process only (torch refuses a second time, and once inter-op work ran). numba's
    count holds for the calling thread, at most the pool numba started with (``NUMBA_NUM_THREADS``). BLAS limits apply
    to the libraries loaded now, process-wide.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_threads needs a whole number >= 1, got {n!r}; thread_count(0) gives the automatic one")
    before = current_threads()
    torch = _torch()
    if torch is not None and not _INTEROP:
        try:
            torch.set_num_interop_threads(n)
            _INTEROP.append(n)
        except RuntimeError:  # inter-op work already started (or someone set it): torch keeps its pool
            _INTEROP.append(torch.get_num_interop_threads())
    _apply(ThreadSettings(torch=n, numba=n, blas=dict.fromkeys(before.blas, n)))
    return before


@contextmanager
def limited_threads(requested: int | None = None) -> Iterator[int]:
    """Run the block with :func:`thread_count` (``requested``) threads (see :func:`set_threads`) and put the previous
    counts back afterwards; yields the count. Enter and leave it in the same thread (torch's and numba's counts are
    per thread); BLAS's count is process-wide, so it changes for the other threads of the process meanwhile."""
    n = thread_count(requested)
    before = set_threads(n)
    try:
        yield n
    finally:
        _apply(before)


def with_threads(job: Job[T], requested: int | None = None) -> Job[T]:
    """``job`` (a generator of progress events) run under :func:`limited_threads`: the counts are set when it
    starts, in the thread that drives it, and put back when it ends, fails or is closed (a cancelled widget job)."""
    with limited_threads(requested):
        return (yield from job)


def describe() -> str:
    """One line on what is set now, e.g. ``torch 2, numba 2, BLAS 2 (2 usable cores)``, for logs and benchmarks."""
    now = current_threads()
    blas = ",".join(str(v) for v in sorted(set(now.blas.values()))) or "-"
    return f"torch {now.torch}, numba {now.numba}, BLAS {blas} ({usable_cores()} usable cores)"
