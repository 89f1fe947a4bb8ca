"""Opening an OME-Zarr pyramid we built in napari: one multiscale layer whose levels stay lazy (dask, not numpy)."""

from __future__ import annotations

import dask.array as da
import napari
import numpy as np

from napari_sparse_sem.io import write_volume
from napari_sparse_sem.io.pyramid import build_pyramid


def test_pyramid_store_opens_as_a_lazy_multiscale_image(viewer, flyem_crop_uint8, tmp_path):
    crop = np.ascontiguousarray(flyem_crop_uint8[:3, :249, :247])
    path = write_volume(tmp_path / "crop.zarr", crop, voxel_size=(30.0, 10.0, 10.0))
    shapes = build_pyramid(path, min_size=60)
    (layer,) = viewer.open(str(path), plugin="napari-sparse-sem")
    assert isinstance(layer, napari.layers.Image) and layer.multiscale
    assert [tuple(level.shape) for level in layer.data] == shapes == [(3, 249, 247), (3, 125, 124), (3, 63, 62)]
    assert all(isinstance(level, da.Array) for level in layer.data)
    assert tuple(layer.scale) == (30.0, 10.0, 10.0)
    np.testing.assert_array_equal(np.asarray(layer.data[0][1]), crop[1])


def test_mask_pyramid_opens_as_multiscale_labels(viewer, tmp_path):
    mask = np.random.default_rng(0).random((2, 140, 130)) < 0.2
    path = write_volume(tmp_path / "mask.zarr", mask)
    build_pyramid(path, min_size=64)
    (layer,) = viewer.open(str(path), plugin="napari-sparse-sem")
    assert isinstance(layer, napari.layers.Labels) and layer.multiscale
    assert [level.dtype for level in layer.data] == [np.uint8, np.uint8]
    assert all(isinstance(level, da.Array) for level in layer.data)
    np.testing.assert_array_equal(np.asarray(layer.data[1]), mask[:, ::2, ::2])
