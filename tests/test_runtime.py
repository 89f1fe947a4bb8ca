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
