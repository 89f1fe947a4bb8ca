"""Method ``self`` in a comparison: trained on each run's own sparse slices (``self_minutes``), on a real FlyEM crop."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from napari_sparse_sem.compare import CompareSpec, compare_job
from napari_sparse_sem.runtime import run_job


def _scratch_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("sparse-sem-self-*"))


def test_compare_trains_self_on_each_run(flyem_crop: np.ndarray) -> None:
    before = _scratch_folders()
    spec = CompareSpec(
        patterns=["random"],
        coverages=[0.1],
        methods=["linear", "self"],
        slices=(4, 6),
        roi=(40, 104, 60, 124),
        self_minutes=0.02,
        holdout_folds=2,
        device="cpu",
    )
    result = run_job(compare_job(flyem_crop, spec))
    by_method = {m: [r for r in result.records if r["method"] == m] for m in ("linear", "self")}
    assert len(by_method["self"]) == 2
    for record in by_method["self"]:
        assert math.isfinite(record["training_s"])  # trained within the comparison, on this run's sparse slices
        assert math.isnan(record["psnr_holdout"])  # its training saw the held-out pixels: no flattering figure
        assert 10 < record["psnr"] < 60
    for record in by_method["linear"]:
        assert math.isnan(record["training_s"]) and math.isfinite(record["psnr_holdout"])
    run = next(r for r in result.runs if r.method == "self")
    assert np.array_equal(run.recon[run.mask], run.sparse[run.mask])  # scanned pixels kept
    assert _scratch_folders() == before  # the scratch weights are removed after the run


def test_self_without_weights_or_minutes_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="self_minutes"):
        CompareSpec(methods=["self"])
