"""Method ``self`` inside a comparison: with ``CompareSpec.self_minutes`` it is trained on each run's own sparse slices
(the selected slices and their context neighbours, with the run's masks) before it reconstructs them, so a comparison
can rank a network that never saw a dense slice (:mod:`napari_sparse_sem.recon.self_training`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.runtime import Progress

SELF_METHOD = "self"
SELF_CONTEXT = 1
"""The neighbours ``self`` reads when the comparison trains it (the default init, ``flyem-context1``)."""


def trains_self(method: str, options: dict[str, Any]) -> bool:
    """Whether the comparison trains ``method`` itself: method ``self`` without a ``weights`` option."""
    return method == SELF_METHOD and not options.get("weights")


@dataclass
class SelfRun:
    """The weights trained for one run (in a scratch folder removed by :meth:`close`) and how long training took."""

    options: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)
    folder: Path | None = None

    def close(self) -> None:
        """Remove the scratch weights (a comparison keeps the figures, not the weights)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def train_self_for_run(
    sparse: np.ndarray,
    mask: np.ndarray,
    options: dict[str, Any],
    *,
    minutes: float,
    seed: int,
    device: str,
    step: int,
    total: int,
    label: str,
) -> Generator[Progress, None, SelfRun]:
    """Train ``self`` on one run's sparse ``(z, y, x)`` slices for ``minutes``; yields the training's progress at
    ``step`` of ``total`` and returns the method options (``weights`` = the new file) with the training time."""
    from napari_sparse_sem.recon.self_training import SelfTrainingConfig, train_self_job

    height, width = (int(s) for s in sparse.shape[1:])
    config = SelfTrainingConfig(minutes=float(minutes), seed=int(seed), crop=min(128, height, width))
    folder = Path(tempfile.mkdtemp(prefix="sparse-sem-self-"))
    job = train_self_job(sparse, mask, config, folder / "self.safetensors", device=device, data_name=label)
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                result = stop.value
                break
            yield Progress(step, total, f"{label} · self: training, {event.message}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        job.close()
    return SelfRun({**options, "weights": str(result["path"])}, float(result["seconds"]), list(result["notes"]), folder)
