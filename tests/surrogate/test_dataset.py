"""make-dataset resumes stores whose saved spec has no schema version (written before it existed) and refuses others."""

from __future__ import annotations

import pytest
import zarr

from napari_sparse_sem.params import SCHEMA_KEY
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate.dataset import DatasetSpec, make_dataset
from napari_sparse_sem.surrogate.montecarlo import MCConfig


def test_resume_compares_specs_not_raw_records(tmp_path) -> None:
    spec = DatasetSpec(
        geometries=1, held_out=0, cuts=1, size=16, scale=0.3, mc=MCConfig(energy_kev=1.0, electrons_per_pixel=2)
    )
    out = tmp_path / "pairs.zarr"
    run_job(make_dataset(spec, out))
    group = zarr.open_group(str(out), mode="r+")
    saved = dict(group.attrs["spec"])
    assert saved[SCHEMA_KEY] == 1 and DatasetSpec.from_dict(saved) == spec
    legacy = {k: v for k, v in saved.items() if k != SCHEMA_KEY}
    legacy["mc"] = {k: v for k, v in saved["mc"].items() if k != SCHEMA_KEY}
    group.attrs["spec"] = legacy  # as an earlier version wrote it
    group["done"][0] = False
    summary = run_job(make_dataset(spec, out, resume=True))
    assert zarr.open_group(str(out), mode="r")["done"][:].all() and summary
    with pytest.raises(ValueError, match="other parameters"):
        run_job(make_dataset(spec.replace(seed=1), out, resume=True))
