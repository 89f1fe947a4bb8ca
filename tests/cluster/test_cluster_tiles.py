"""Tiled blocks: a method that allows tiles (the GAN) reconstructs big slices tile by tile, each read with its halo; the
tiles fit together without seams that cost quality, compared with the same method on whole slices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from napari_sparse_sem.cluster.reconstruct import reconstruct_on_cluster
from napari_sparse_sem.cluster.run import BlockDone
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.recon.to_file import reconstruct_to_file


def test_gan_tiles_with_halo_match_whole_slices(scan: dict[str, Path], crop_tif: Path, client: Any, tmp_path: Path):
    events: list[Any] = []
    meta = reconstruct_on_cluster(
        scan["sparse"],
        scan["mask"],
        "gan-mse",
        tmp_path / "tiles.zarr",
        client=client,
        slices=(0, 4),
        slab=2,
        tile=64,
        pyramid=False,
        on_progress=events.append,
    )
    reconstruct_to_file(scan["sparse"], scan["mask"], "gan-mse", tmp_path / "whole.zarr", slices=(0, 4))
    keys = sorted(e.partial.key for e in events if isinstance(e.partial, BlockDone))
    assert len(keys) == 2 * 2 * 2 and "z0-2_y64-128_x0-64" in keys  # 2 slabs x 2 x 2 tiles of 64 px
    assert meta["complete"] is True and meta["tile"] == 64
    dense = tifffile.imread(crop_tif)[:4].astype(np.float32) / 255
    tiled = np.asarray(read_volume(tmp_path / "tiles.zarr").data).astype(np.float32) / 255
    whole = np.asarray(read_volume(tmp_path / "whole.zarr").data).astype(np.float32) / 255
    tiled_db, whole_db = psnr(dense, tiled), psnr(dense, whole)
    assert tiled_db > 30.0  # measured 31.4 dB (20 % random scan of the crop); zeros or noise would be far below
    assert abs(tiled_db - whole_db) < 0.05, (tiled_db, whole_db)  # measured: equal to 0.01 dB
    seam = np.abs(tiled[:, 62:66, :] - whole[:, 62:66, :]).mean()  # at the tile border, rows 63|64
    assert seam < 0.002  # measured 0.0002 of the range


def test_a_method_that_needs_whole_slices_refuses_tiles(scan: dict[str, Path], client: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs whole slices"):
        reconstruct_on_cluster(scan["sparse"], scan["mask"], "linear", tmp_path / "r.zarr", client=client, tile=64)
    assert not (tmp_path / "r.zarr").exists()
