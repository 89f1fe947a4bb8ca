"""Reconstruct, then score against a ground truth: the job behind the *Reconstruct* widget's metrics."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sparse_sem.metrics import abs_error, slice_metrics
from napari_sparse_sem.runtime import Job, Progress


@dataclass
class Measured:
    """Metrics of a finished reconstruction against a ground truth (means over slices) and its error map."""

    error: np.ndarray
    rows: list[dict[str, float]]

    def mean(self, key: str) -> float:
        """The mean of ``key`` over the slices where it is finite (NaN when none is)."""
        values = np.array([r[key] for r in self.rows], dtype=np.float64)
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else float("nan")


def reconstruct_and_measure(
    job: Job[Any], out: np.ndarray, truth: np.ndarray | None, mask: np.ndarray
) -> Generator[Progress, None, Measured | None]:
    """Run a reconstruction job that fills ``out``, then (with a ground truth) score every slice; yields progress
    throughout and returns the :class:`Measured` scores (None without a ground truth)."""
    yield from job
    if truth is None:
        return None
    n = out.shape[0]
    rows = []
    for z in range(n):
        yield Progress(z, n, f"measuring slice {z + 1} of {n}")
        rows.append(slice_metrics(truth[z], out[z], mask[z]))
    yield Progress(n, n, "measured")
    return Measured(error=abs_error(truth, out), rows=rows)
