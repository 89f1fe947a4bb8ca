"""Overlapping tiles: full coverage, seamless blending, and a tiled DIP fit that matches the whole-slice fit."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.recon import create
from napari_sparse_sem.recon.tiles import Tiling, tile_starts


def test_tiles_cover_the_image_with_the_overlap() -> None:
    assert tile_starts(64, 32, 8) == [0, 24, 32]
    assert tile_starts(30, 32, 8) == [0]  # smaller than a tile: one tile
    tiling = Tiling((70, 100), 32, 8)
    covered = np.zeros((70, 100), dtype=int)
    for box in tiling.boxes:
        covered[box] += 1
    assert covered.min() >= 1 and len(tiling.boxes) == 3 * 4
    with pytest.raises(ValueError, match="larger than the overlap"):
        tile_starts(100, 8, 8)


def test_blending_returns_a_constant_exactly_and_an_image_without_seams() -> None:
    tiling = Tiling((70, 100), 32, 8)
    np.testing.assert_allclose(tiling.blend([np.full((32, 32), 0.7, np.float32)] * len(tiling.boxes)), 0.7, rtol=1e-6)
    image = np.random.default_rng(0).random((70, 100)).astype(np.float32)
    np.testing.assert_allclose(tiling.blend([image[box] for box in tiling.boxes]), image, rtol=1e-5)


def test_tiled_dip_fit_matches_the_whole_slice_fit(flyem_crop: np.ndarray) -> None:
    dense = np.ascontiguousarray(flyem_crop[5, 60:124, 60:124])
    mask = np.random.default_rng(0).random(dense.shape) < 0.2
    sparse = np.where(mask, dense, 0).astype(np.float32)
    options = {"levels": 3, "channels": 16, "input_channels": 8, "stopping": "fixed", "preview_every": 0}
    options["iterations_first"] = 400
    whole = create("dip", **options).reconstruct_slice(sparse[None], mask[None], 0)
    dip = create("dip", **options, tile=32, tile_overlap=8, tile_batch=4)
    assert len(dip._tiling(dense.shape).boxes) == 9
    tiled = dip.reconstruct_slice(sparse[None], mask[None], 0)
    np.testing.assert_array_equal(tiled[mask], sparse[mask])
    nearest = create("nearest").reconstruct_slice(sparse[None], mask[None], 0)
    # Measured: whole 30.4 dB, tiled 30.1 dB, nearest 27.5 dB on this 64² crop at 20 % after 400 iterations.
    assert psnr(dense, tiled) > psnr(dense, whole) - 1.0
    assert psnr(dense, tiled) > psnr(dense, nearest)
    with pytest.raises(ValueError, match="tile must be 0"):
        create("dip", tile=16, tile_overlap=8)
