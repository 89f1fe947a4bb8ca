"""CPU threads (threads.py): the usable cores from the CPU affinity, the fair split between workers, the order
--threads > OMP_NUM_THREADS > usable cores, torch/numba/BLAS set and put back (in a worker thread and around a job
too), and clear refusals of bad counts."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import numba
import pytest
import torch

from napari_sparse_sem.runtime import Progress, run_job
from napari_sparse_sem.threads import (
    current_threads,
    limited_threads,
    restore_threads,
    set_threads,
    thread_count,
    usable_cores,
    with_threads,
    worker_thread_share,
)

HAS_AFFINITY = hasattr(os, "sched_getaffinity")


@pytest.fixture(autouse=True)
def _put_threads_back() -> Iterator[None]:
    """These tests change process-wide thread counts: the next tests get the counts they had."""
    before = current_threads()
    yield
    restore_threads(before)


@pytest.mark.skipif(not HAS_AFFINITY, reason="no CPU affinity on this platform")
def test_usable_cores_follow_the_cpu_affinity_not_the_machine() -> None:
    allowed = os.sched_getaffinity(0)
    assert usable_cores() == len(allowed)
    try:
        os.sched_setaffinity(0, {min(allowed)})  # like `taskset -c N`: this thread may use one core
        assert usable_cores() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert usable_cores() == len(allowed)


@pytest.mark.parametrize(
    ("cores", "workers", "shares"),
    [(8, 4, [2, 2, 2, 2]), (5, 2, [3, 2]), (7, 3, [3, 2, 2]), (2, 3, [1, 1, 1]), (1, 1, [1]), (0, 2, [1, 1])],
)
def test_cores_are_split_fairly_between_workers(cores: int, workers: int, shares: list[int]) -> None:
    assert worker_thread_share(cores, workers) == shares
    if cores >= workers:
        assert sum(shares) == cores  # every core used, none twice


def test_worker_share_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        worker_thread_share(4, 0)


def test_local_cluster_workers_get_the_fair_share() -> None:
    from napari_sparse_sem.cluster.connect import cores_here, local_worker_specs

    assert cores_here() == usable_cores()
    specs = local_worker_specs(2, gpus=[], cores=5)
    assert [s["env"]["OMP_NUM_THREADS"] for s in specs] == ["3", "2"]
    assert [s["env"]["NUMBA_NUM_THREADS"] for s in specs] == ["3", "2"]


def test_threads_asked_for_win_then_omp_num_threads_then_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for auto in (thread_count(), thread_count(0), thread_count(None)):
        assert 1 <= auto <= usable_cores()  # the usable cores not busy elsewhere (other tests may run beside)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_count(0) == 3  # the environment's choice is the automatic one
    assert thread_count(1) == 1  # --threads wins over it
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # nested OpenMP levels: the outer one counts
    assert thread_count(0) == 4
    for unusable in ("", "zero", "0", "-2"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert 1 <= thread_count(0) <= usable_cores()


def test_more_threads_than_cores_are_allowed_with_a_warning() -> None:
    many = usable_cores() + 3
    with pytest.warns(RuntimeWarning, match=f"{many} threads on {usable_cores()} usable core"):
        assert thread_count(many) == many


@pytest.mark.parametrize("bad", [-1, -8, 1.5, True, "2"])
def test_bad_thread_counts_are_clear_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="threads must be"):
        thread_count(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 2.0])
def test_set_threads_needs_a_positive_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match="whole number >= 1"):
        set_threads(bad)  # type: ignore[arg-type]


def _counts() -> tuple[int, int, set[int]]:
    now = current_threads()
    return now.torch, now.numba, set(now.blas.values())


def test_set_threads_sets_torch_numba_and_blas_and_limited_threads_puts_them_back() -> None:
    two = min(2, numba.config.NUMBA_NUM_THREADS)  # numba never goes past the pool it started with
    set_threads(2)
    assert torch.get_num_threads() == 2 and numba.get_num_threads() == two
    assert current_threads().blas and set(current_threads().blas.values()) == {2}  # numpy's BLAS is loaded
    before = _counts()
    with limited_threads(1) as n:
        assert n == 1
        assert _counts() == (1, 1, {1})
    assert _counts() == before
    with pytest.raises(RuntimeError, match="inside"), limited_threads(1):  # put back when the block fails too
        raise RuntimeError("inside")
    assert _counts() == before
    set_threads(3)  # torch allows its inter-op pool to be set once; later calls still work
    assert torch.get_num_threads() == 3 and torch.get_num_interop_threads() >= 1


def _blas_pool_is_shared() -> bool:
    from threadpoolctl import threadpool_info

    return all(info.get("threading_layer") != "openmp" for info in threadpool_info() if info["user_api"] == "blas")


def _in_new_thread() -> int:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_a_worker_threads_block_leaves_this_thread_alone_and_new_threads_follow_it() -> None:
    set_threads(2)
    main_torch, main_numba = torch.get_num_threads(), numba.get_num_threads()
    inside: dict[str, int] = {}
    entered, release = threading.Event(), threading.Event()

    def worker() -> None:
        with limited_threads(1):
            inside["torch"], inside["numba"] = torch.get_num_threads(), numba.get_num_threads()
            inside["blas"] = max(current_threads().blas.values())
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=worker)
    thread.start()
    assert entered.wait(60)
    try:
        assert inside == {"torch": 1, "numba": 1, "blas": 1}  # BLAS too, though this thread set it before
        assert numba.get_num_threads() == main_numba  # numba's count is per thread
        if _blas_pool_is_shared():
            assert set(current_threads().blas.values()) == {1}  # one OpenBLAS pool for the process
        if torch.backends.openmp.is_available():  # OpenMP keeps torch's count per thread once a thread used it
            assert torch.get_num_threads() == main_torch
        assert _in_new_thread() == 1  # a thread that starts torch work now begins with the count set last
    finally:
        release.set()
        thread.join()
    assert torch.get_num_threads() == main_torch and numba.get_num_threads() == main_numba
    assert _in_new_thread() == 2 and set(current_threads().blas.values()) == {2}


def _job(seen: list[int], steps: int = 3):
    for step in range(steps):
        seen.append(torch.get_num_threads())
        yield Progress(step + 1, steps, "working")
    return "done"


def test_a_job_runs_with_its_threads_and_they_come_back_when_it_ends_or_is_closed() -> None:
    set_threads(2)
    seen: list[int] = []
    assert run_job(with_threads(_job(seen), 1)) == "done"
    assert seen == [1, 1, 1] and torch.get_num_threads() == 2

    seen.clear()
    job = with_threads(_job(seen), 1)
    next(job)
    assert torch.get_num_threads() == 1
    job.close()  # a cancelled widget job is closed between two steps
    assert seen == [1] and torch.get_num_threads() == 2


STAT_BEFORE = """cpu  100 0 100 1000 0 0 0 0 0 0
cpu0 50 0 50 500 0 0 0 0 0 0
cpu1 50 0 50 500 0 0 0 0 0 0
cpu2 0 0 0 100 0 0 0 0 0 0
intr 1 2 3
"""
STAT_AFTER = """cpu  300 0 100 1100 0 0 0 0 0 0
cpu0 150 0 50 500 0 0 0 0 0 0
cpu1 50 0 50 590 10 0 0 0 0 0
cpu2 0 0 0 100 0 0 0 0 0 0
"""


def test_free_cores_sums_the_idle_share_of_this_process_cpus() -> None:
    from napari_sparse_sem.threads import free_cores

    assert free_cores(STAT_BEFORE, STAT_AFTER, {0, 1}) == pytest.approx(1.0)  # cpu0 busy, cpu1 idle (iowait counts)
    assert free_cores(STAT_BEFORE, STAT_AFTER, {1}) == pytest.approx(1.0)
    assert free_cores(STAT_BEFORE, STAT_AFTER, {0}) == pytest.approx(0.0)
    assert free_cores(STAT_BEFORE, STAT_AFTER, {2}) is None  # no time passed on it
    assert free_cores(STAT_BEFORE, STAT_AFTER, {7}) is None  # not listed (a container's /proc)
    assert free_cores(STAT_BEFORE, STAT_AFTER, set()) is None


@pytest.mark.skipif(not (HAS_AFFINITY and os.path.exists("/proc/stat")), reason="Linux: affinity and /proc/stat")
def test_auto_leaves_out_a_core_another_process_keeps_busy() -> None:
    """A busy process pinned to one of our cores: the idle share drops by about one core, and auto stays >= 1."""
    import subprocess
    import sys

    from napari_sparse_sem.threads import auto_threads, idle_cores

    cpus = sorted(os.sched_getaffinity(0))
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(burner.pid, {cpus[0]})
        time.sleep(0.3)  # let it start spinning
        idle = idle_cores(0.3)
        assert idle is not None and idle <= len(cpus) - 0.6  # other load beside the test only lowers it further
        assert 1 <= auto_threads() <= max(1, len(cpus) - 1)
    finally:
        burner.kill()
        burner.wait()
