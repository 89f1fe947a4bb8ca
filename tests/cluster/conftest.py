"""Fixtures of the block-wise tests: one ``LocalCluster`` of two worker processes shared by the tests of this folder
(a cluster takes seconds to start; it is closed when they are done, so its threads never run beside later tests), and
a small sparse scan of the packaged FlyEM crop on disk with its single-process reconstruction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

VOXEL_NM = 10.0


@pytest.fixture(scope="package")
def client() -> Iterator[Any]:
    """A ``distributed.Client`` of a LocalCluster(n_workers=2, processes=True) for service-level tests (``client=``)."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=50
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as active,
    ):
        yield active


@pytest.fixture(scope="session")
def crop_tif(tmp_path_factory: pytest.TempPathFactory, flyem_crop_uint8: np.ndarray) -> Path:
    """16 x 128 x 128 uint8 of the packaged FlyEM crop (full-volume slices 120-135), 10 nm voxels."""
    path = tmp_path_factory.mktemp("cluster-data") / "crop.tif"
    tifffile.imwrite(
        path,
        flyem_crop_uint8[:16, 60:188, 60:188],
        imagej=True,
        resolution=(1 / VOXEL_NM, 1 / VOXEL_NM),
        metadata={"spacing": VOXEL_NM, "unit": "nm", "axes": "ZYX"},
    )
    return path


@pytest.fixture(scope="session")
def scan(crop_tif: Path) -> dict[str, Path]:
    """The crop's 20 % random scan as OME-Zarr (``sparse``, ``mask``; written by the single-process `simulate`) and
    its single-process linear reconstruction (``single``), all 16 slices."""
    from typer.testing import CliRunner

    from napari_sparse_sem.cli import app
    from napari_sparse_sem.recon.to_file import reconstruct_to_file

    folder = crop_tif.parent
    sparse, mask, single = folder / "sparse.zarr", folder / "sparse_mask.zarr", folder / "single.zarr"
    args = ["simulate", str(crop_tif), "-o", str(sparse), "--coverage", "0.2", "--seed", "4", "-q"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    reconstruct_to_file(sparse, mask, "linear", single)
    return {"sparse": sparse, "mask": mask, "single": single}
