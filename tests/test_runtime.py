"""The progress/cancel protocol: run_job returns results, stops on request, and always lets a job clean up."""

from __future__ import annotations

import pytest

from napari_sparse_sem.runtime import Cancelled, Job, Progress, run_job


def counting_job(log: list[str], n: int = 5) -> Job[int]:
    try:
        for step in range(1, n + 1):
            yield Progress(step, n, f"step {step}")
        return n
    finally:
        log.append("cleaned up")


def test_returns_the_result_and_reports_every_step() -> None:
    log: list[str] = []
    steps: list[int] = []
    assert run_job(counting_job(log), on_progress=lambda e: steps.append(e.step)) == 5
    assert steps == [1, 2, 3, 4, 5] and log == ["cleaned up"]


def test_stop_request_closes_the_job() -> None:
    log: list[str] = []
    steps: list[int] = []
    with pytest.raises(Cancelled):
        run_job(counting_job(log), on_progress=lambda e: steps.append(e.step), should_stop=lambda: len(steps) == 2)
    assert steps == [1, 2] and log == ["cleaned up"]


def test_an_error_in_the_consumer_closes_the_job_too() -> None:
    log: list[str] = []

    def interrupt(event: Progress) -> None:
        if event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(counting_job(log), on_progress=interrupt)
    assert log == ["cleaned up"]  # the job's finally ran before the interrupt propagated


def test_a_stop_signal_stops_the_job_at_its_next_step() -> None:
    """SIGTERM inside stop_signals: the job finishes the step it is on, then Stopped (a KeyboardInterrupt that knows
    its signal) is raised and the job's cleanup runs; the old handler is back afterwards."""
    import os
    import signal

    from napari_sparse_sem.runtime import Stopped, interrupt_exit_code, stop_signals

    log: list[str] = []
    steps: list[int] = []

    def term_at_step_two(event: Progress) -> None:
        steps.append(event.step)
        if event.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with stop_signals(), pytest.raises(Stopped) as stop:
        run_job(counting_job(log), on_progress=term_at_step_two)
    assert steps == [1, 2] and log == ["cleaned up"]
    assert stop.value.signum == signal.SIGTERM and interrupt_exit_code(stop.value) == 143
    assert isinstance(stop.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before


def test_signals_outside_a_job_raise_at_once_and_repeats_during_cleanup_are_ignored() -> None:
    import os
    import signal

    from napari_sparse_sem.runtime import Stopped, interrupt_exit_code, stop_signals

    cleanup: list[str] = []
    with stop_signals():
        with pytest.raises(Stopped) as stop:
            try:
                os.kill(os.getpid(), signal.SIGHUP)
            finally:
                os.kill(os.getpid(), signal.SIGHUP)  # a second signal while cleaning up does not cut it short
                cleanup.append("done")
    assert cleanup == ["done"] and interrupt_exit_code(stop.value) == 129
    assert interrupt_exit_code(KeyboardInterrupt()) == 130
