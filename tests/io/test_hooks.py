"""npe2 hooks: reader choice, layer-data tuples, writer hooks and the packaged sample (no napari import needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from napari_sparse_sem import DATA_CREDIT
from napari_sparse_sem.io import read_metadata, read_volume, write_volume
from napari_sparse_sem.io.napari_hooks import get_reader, layer_voxel_size, write_tiff, write_zarr
from napari_sparse_sem.io.sample_data import flyem_sample, load_sample_volume


@pytest.fixture(scope="module")
def crop(flyem_crop_uint8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(flyem_crop_uint8[10:14, :40, :48])


def test_get_reader_declines_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader(str(tmp_path / "missing.xyz")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None
    assert get_reader([]) is None


def test_get_reader_accepts_our_formats(tmp_path, crop):
    path = str(write_volume(tmp_path / "v.tif", crop))
    assert callable(get_reader(path))
    assert callable(get_reader([path]))
    assert callable(get_reader(str(write_volume(tmp_path / "v.zarr", crop))))
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=crop)
    assert callable(get_reader(f"{tmp_path / 'v.h5'}:/raw"))


def test_reader_layer_tuple_for_the_real_volume(flyem_volume_path):
    reader = get_reader(str(flyem_volume_path))
    [(data, kwargs, layer_type)] = reader(str(flyem_volume_path))
    assert layer_type == "image"
    assert data.shape == (250, 250, 250) and type(data) is not np.ndarray  # lazy
    assert kwargs["name"] == "flyem_medulla_fibsem_sample1"
    assert kwargs["scale"] == (10.0, 10.0, 10.0)
    assert kwargs["metadata"]["voxel_size_nm"] == (10.0, 10.0, 10.0)
    assert kwargs["metadata"]["format"] == "tiff"


def test_reader_omits_scale_when_voxel_size_unknown(tmp_path, crop):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, crop, photometric="minisblack")
    [(data, kwargs, _)] = get_reader(str(path))(str(path))
    assert "scale" not in kwargs and kwargs["metadata"]["voxel_size_nm"] is None
    np.testing.assert_array_equal(data, crop)


def test_masks_we_wrote_open_as_labels(tmp_path, crop):
    mask = crop > 100
    path = str(write_volume(tmp_path / "mask.tif", mask, voxel_size=(10, 10, 10), metadata={"coverage": 0.3}))
    [(data, kwargs, layer_type)] = get_reader(path)(path)
    assert layer_type == "labels"
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(data), mask.astype(np.uint8))
    assert kwargs["metadata"]["kind"] == "mask" and kwargs["metadata"]["coverage"] == 0.3


@pytest.mark.parametrize(("writer", "suffix"), [(write_tiff, ".tif"), (write_zarr, ".zarr")])
def test_writer_hooks_save_voxel_size_and_layer_metadata(tmp_path, crop, writer, suffix):
    target = tmp_path / f"layer{suffix}"
    target.write_text("old") if suffix == ".tif" else None  # napari already confirmed replacing it
    meta = {"name": "sparse 10%", "scale": (20.0, 5.0, 5.0), "metadata": {"pattern": "random", "coverage": 0.1}}
    written = writer(str(target), crop, meta)
    assert written == [str(target)]
    volume = read_volume(target)
    assert volume.voxel_size == (20.0, 5.0, 5.0)
    np.testing.assert_array_equal(np.asarray(volume.data), crop)
    assert read_metadata(target) == {"layer_name": "sparse 10%", "pattern": "random", "coverage": 0.1}


def test_layer_voxel_size_rules():
    assert layer_voxel_size({"scale": (10.0, 4.0, 4.0)}) == (10.0, 4.0, 4.0)
    assert layer_voxel_size({"scale": (4.0, 5.0)}) == (5.0, 4.0, 5.0)
    assert layer_voxel_size({"scale": (1.0, 1.0, 1.0)}) is None  # napari's default: unknown
    assert layer_voxel_size({"scale": (1.0, 1.0, 1.0), "metadata": {"voxel_size_nm": (8, 8, 8)}}) == (8.0, 8.0, 8.0)
    assert layer_voxel_size({}) is None


def test_sample_data_is_the_credited_flyem_crop(flyem_crop_uint8):
    [(data, kwargs, layer_type)] = flyem_sample()
    assert layer_type == "image"
    assert data.shape == (32, 250, 250) and data.dtype == np.uint8
    np.testing.assert_array_equal(data, flyem_crop_uint8)
    assert kwargs["name"] == "FlyEM medulla z120-151"
    assert kwargs["scale"] == (10.0, 10.0, 10.0)
    assert kwargs["metadata"]["credit"] == DATA_CREDIT
    assert kwargs["metadata"]["z_offset"] == 120
    assert kwargs["metadata"]["voxel_size_nm"] == (10.0, 10.0, 10.0)
    volume = load_sample_volume()
    assert volume.voxel_size == (10.0, 10.0, 10.0) and volume.metadata["credit"] == DATA_CREDIT


def test_hooks_do_not_import_napari_or_qt():
    code = (
        "import sys, napari_sparse_sem.io.napari_hooks, napari_sparse_sem.io.sample_data;"
        "print([m for m in ('napari', 'qtpy', 'PyQt5', 'torch') if m in sys.modules])"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=src).stdout
    assert out.strip() == "[]"


def test_hooks_through_npe2_manifest(tmp_path, crop):
    """The manifest wiring napari uses: npe2 picks our reader for a .tif and our writer for .zarr labels."""
    import npe2

    npe2.PluginManager.instance().discover()
    mask = (crop > 90).astype(np.uint8)
    layer = (mask, {"name": "mask", "scale": (10.0, 5.0, 5.0), "metadata": {"kind": "mask"}}, "labels")
    [written] = npe2.write(str(tmp_path / "mask.zarr"), [layer], plugin_name="napari-sparse-sem")
    [(data, kwargs, layer_type)] = npe2.read([written], stack=False, plugin_name="napari-sparse-sem")
    assert layer_type == "labels" and kwargs["scale"] == (10.0, 5.0, 5.0)
    np.testing.assert_array_equal(np.asarray(data), mask)
