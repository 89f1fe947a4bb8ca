"""Block-wise simulation: both stores and the acquisition record equal the single-process `sparse-sem simulate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.cluster.simulate import simulate_on_cluster
from napari_sparse_sem.io import read_metadata, read_volume
from napari_sparse_sem.sampling.record import AcquisitionRecord
from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec


def test_blocks_equal_the_single_process_simulation(crop_tif: Path, client: Any, tmp_path: Path) -> None:
    single = tmp_path / "single.zarr"
    args = ["simulate", crop_tif, "-o", single, "--slices", "3:15", "--roi", "8:120,0:100", "--coverage", "0.1"]
    args += ["--seed", "7", "--dose", "30", "-q"]
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    out = tmp_path / "blocks.zarr"
    spec, acquisition = MaskSpec(coverage=0.1, seed=7), AcquisitionSpec(dose=30.0, seed=7)
    scan = simulate_on_cluster(
        crop_tif, out, spec, acquisition, client=client, slices=(3, 15), roi=(8, 120, 0, 100), slab=4
    )
    assert scan.complete and scan.metadata["blocks"] == {"total": 3, "done": 3, "failed": 0}
    for ours, theirs in ((out, single), (tmp_path / "blocks_mask.zarr", tmp_path / "single_mask.zarr")):
        a, b = read_volume(ours), read_volume(theirs)
        assert a.data.dtype == b.data.dtype and a.data.shape == (12, 112, 100)
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
        assert tuple(a.voxel_size) == tuple(b.voxel_size) == (10.0, 10.0, 10.0)
    record = AcquisitionRecord.from_metadata(read_metadata(out))
    assert record == AcquisitionRecord.from_metadata(read_metadata(single))
    assert record == scan.record and record.slices == (3, 15) and record.roi == (8, 120, 0, 100)
    assert read_metadata(tmp_path / "blocks_mask.zarr")["kind"] == "mask"
