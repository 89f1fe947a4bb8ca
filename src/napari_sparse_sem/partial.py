"""Keep finished work when a long run stops early: a stop (Ctrl-C, SIGTERM, SIGHUP) or an error after some units
(slices, runs) finished writes those, marked ``complete: false``, and says so — the same way for every face.

:class:`Interrupted` is what a stopped run raises once its finished part is safe; :func:`run_into_report` drives a
report's job into a :class:`~napari_sparse_sem.outputs.ReportFolder` with that rule.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_sparse_sem.runtime import Job, Progress, run_job


class Interrupted(Exception):
    """A stop by signal ``signum`` after ``done`` of ``total`` units (``unit``: "slice", "run") finished; those were
    written to ``path`` (None: nothing was written)."""

    def __init__(self, done: int, total: int, path: Path | None, signum: int = 2, unit: str = "slice") -> None:
        super().__init__(f"interrupted after {done} of {total} {unit}s")
        self.done, self.total, self.path, self.signum, self.unit = done, total, path, signum, unit

    def kept(self) -> str:
        """One sentence on what was kept."""
        if self.path is None:
            if self.done:
                return f"the {self.done} finished {self.unit}s could not be written; nothing written."
            return f"no {self.unit} was finished; nothing written (0 of {self.total})."
        return f"wrote the {self.done} finished of {self.total} {self.unit}s to {self.path} (complete: false)."


def run_into_report(
    job: Job[Any],
    part: type,
    folder: Any,
    write_partial: Callable[[list[Any]], Any],
    total: int,
    unit: str,
    on_progress: Callable[[Progress], None] | None = None,
) -> Any:
    """Run a report's ``job`` and return its result, collecting the partials of type ``part`` it yields.

    A stop or an error after some of the ``total`` units finished writes those through ``write_partial`` into the
    stage of ``folder`` (a :class:`~napari_sparse_sem.outputs.ReportFolder`) and commits it (``complete: false``): a
    stop then raises :class:`Interrupted`, a ``ValueError`` is raised again saying what was kept.
    """
    done: list[Any] = []

    def feed(event: Progress) -> None:
        if isinstance(event.partial, part):
            done.append(event.partial)
        if on_progress is not None:
            on_progress(event)

    try:
        return run_job(job, feed)
    except BaseException as exc:
        written = None
        if done:
            write_partial(done)
            written = folder.commit()
        stop = Interrupted(len(done), total, written, getattr(exc, "signum", 2), unit)
        if isinstance(exc, KeyboardInterrupt):
            raise stop from None
        if done and isinstance(exc, ValueError):
            raise ValueError(f"{exc} ({stop.kept()})") from exc
        raise
