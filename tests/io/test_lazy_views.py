"""Lazy per-slice views: conversions happen slice by slice, sources are never copied or loaded whole."""

from __future__ import annotations

import numpy as np
import zarr

from napari_sparse_sem.io.volume import SliceMap, to_float01, value_range


class CountingSource:
    """A (z, y, x) array that records which slices were read (stands in for a file too big to load)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

    def __getitem__(self, index):
        self.reads.append(index)
        return self.data[index]


def test_slice_map_converts_only_the_slice_read(flyem_crop_uint8: np.ndarray) -> None:
    source = CountingSource(flyem_crop_uint8[:6])
    view = SliceMap(source, lambda plane: to_float01(plane, value_range_=(0.0, 255.0)), np.float32)
    assert view.shape == (6, 250, 250) and view.dtype == np.float32 and view.ndim == 3
    plane = view[4]
    assert source.reads == [4]
    np.testing.assert_allclose(plane, flyem_crop_uint8[4] / 255.0, atol=1e-6)


def test_slice_map_keeps_a_memmap_a_view(tmp_path, flyem_crop_uint8: np.ndarray) -> None:
    mm = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.uint8, shape=(4, 250, 250))
    mm[:] = flyem_crop_uint8[:4]
    view = SliceMap(mm[1:3], lambda plane: plane // 2, np.uint8)
    assert view.source.base is not None  # a view of the map, not a copy
    np.testing.assert_array_equal(view[1], flyem_crop_uint8[2] // 2)


def test_value_range_streams_over_lazy_arrays(tmp_path, flyem_crop: np.ndarray) -> None:
    shifted = (flyem_crop[:5] * 3.0 - 1.0).astype(np.float32)  # float data outside [0, 1]: min/max are used
    store = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=shifted.shape, chunks=(1, 250, 250), dtype="f4")
    store[:] = shifted
    source = CountingSource(store)
    lo, hi = value_range(source)
    assert (lo, hi) == (float(shifted.min()), float(shifted.max()))
    assert source.reads == list(range(5))  # one slice at a time
    assert value_range(flyem_crop[:2]) == (0.0, 1.0)  # floats already in [0, 1] keep that range
