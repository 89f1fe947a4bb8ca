"""write_volume: round trips keep data, dtype, voxel size and parameters; files stay readable by Fiji/OME tools."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from napari_sparse_sem.io import jsonable, read_metadata, read_volume, write_volume
from napari_sparse_sem.io.readers import INFO_MARKER


@pytest.fixture(scope="module")
def crop(flyem_crop_uint8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(flyem_crop_uint8[:5, 30:94, 60:116])  # (5, 64, 56) uint8


PARAMS = {
    "pattern": "jittered_grid",
    "coverage": np.float32(0.25),
    "seed": np.int64(7),
    "tile": (8, 8),
    "source": "FlyEM medulla z120-151",
    "metrics": {"psnr": 31.5, "per_slice": np.array([30.0, 33.0])},
}


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_round_trip_keeps_data_voxel_size_and_parameters(tmp_path, crop, suffix, dtype):
    data = crop.astype(dtype) / (255.0 if dtype == "float32" else 1)
    data = data.astype(dtype)
    path = write_volume(tmp_path / f"vol{suffix}", data, voxel_size=(12.5, 3.7, 4.2), metadata=PARAMS)
    assert path == tmp_path / f"vol{suffix}"
    volume = read_volume(path)
    assert volume.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(volume.data), data)
    assert volume.voxel_size == (12.5, 3.7, 4.2)
    expected = jsonable(PARAMS)
    assert expected["tile"] == [8, 8] and expected["metrics"]["per_slice"] == [30.0, 33.0]
    assert expected["coverage"] == pytest.approx(0.25) and type(expected["seed"]) is int
    assert read_metadata(path) == expected
    assert {k: volume.metadata[k] for k in expected} == expected
    assert volume.metadata["format"] == ("tiff" if suffix == ".tif" else "zarr")
    assert not list(tmp_path.glob(".*partial*")), "temporary files left behind"


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_bool_mask_saved_as_uint8_and_read_back_as_bool(tmp_path, crop, suffix):
    mask = crop > 128
    before = mask.copy()
    path = write_volume(tmp_path / f"mask{suffix}", mask, voxel_size=(10, 10, 10), metadata={"pattern": "random"})
    np.testing.assert_array_equal(mask, before)  # input untouched
    assert read_metadata(path) == {"pattern": "random", "kind": "mask"}
    if suffix == ".tif":
        assert tifffile.imread(path).dtype == np.uint8
        assert set(np.unique(tifffile.imread(path))) == {0, 1}
    else:
        assert zarr.open_group(str(path), mode="r")["0"].dtype == np.uint8
    volume = read_volume(path)
    assert volume.data.dtype == bool
    np.testing.assert_array_equal(np.asarray(volume.data), mask)


def test_tiff_is_imagej_compatible_for_fiji(tmp_path, crop):
    path = write_volume(tmp_path / "fiji.tif", crop, voxel_size=(20.0, 5.0, 4.0), metadata={"method": "dip"})
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        ij = tif.imagej_metadata
        assert ij["unit"] == "micron"
        assert ij["spacing"] == pytest.approx(0.02)
        assert ij["slices"] == 5
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(250.0)  # pixels per micron = 1000 / 4 nm
        num, den = tif.pages[0].tags["YResolution"].value
        assert num / den == pytest.approx(200.0)
        info = ij["Info"]
    assert info.startswith(INFO_MARKER)
    block = json.loads(info.split(INFO_MARKER, 1)[1])["napari_sparse_sem"]
    assert block["parameters"] == {"method": "dip"} and block["voxel_size_nm"] == [20.0, 5.0, 4.0]
    assert isinstance(read_volume(path).data, np.memmap)  # uncompressed, contiguous: memory-mapped


def test_zarr_is_ome_zarr_chunked_per_slice(tmp_path, crop):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = write_volume(tmp_path / "out.zarr", crop, voxel_size=(30.0, 4.0, 4.0))
    array = zarr.open_group(str(path), mode="r")["0"]
    assert array.chunks == (1, 64, 56)
    node = next(iter(Reader(parse_url(str(path)))()))
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [30.0, 4.0, 4.0]
    assert [a["unit"] for a in node.metadata["axes"]] == ["nanometer"] * 3
    np.testing.assert_array_equal(np.asarray(node.data[0]), crop)


def test_int64_labels_round_trip_exactly_through_imagej_tiff(tmp_path, crop):
    labels = crop.astype(np.int64) * 200  # up to 51000: stored as uint16, restored as int64
    path = write_volume(tmp_path / "labels.tif", labels)
    assert tifffile.imread(path).dtype == np.uint16
    volume = read_volume(path)
    assert volume.data.dtype == np.int64
    assert volume.voxel_size is None
    np.testing.assert_array_equal(np.asarray(volume.data), labels)


def test_2d_image_and_2d_voxel_size(tmp_path, crop):
    path = write_volume(tmp_path / "plane.tif", crop[0], voxel_size=(5.0, 4.0))
    volume = read_volume(path)
    assert volume.shape == (1, 64, 56)
    assert volume.voxel_size == (4.0, 5.0, 4.0)


class _SliceRecorder:
    """An array-like that records which z ranges were read, to prove writes go slice by slice."""

    def __init__(self, data: np.ndarray) -> None:
        self._data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list[int] = []

    def __getitem__(self, key):
        block = self._data[key]
        self.reads.append(1 if np.ndim(block) == 2 else block.shape[0])
        return block


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_large_inputs_are_written_one_slice_at_a_time(tmp_path, crop, suffix):
    recorder = _SliceRecorder(crop)
    write_volume(tmp_path / f"rec{suffix}", recorder)
    assert recorder.reads == [1] * len(crop)
    lazy = da.from_array(_SliceRecorder(crop), chunks=(1, 64, 56))
    path = write_volume(tmp_path / f"dask{suffix}", lazy)
    np.testing.assert_array_equal(np.asarray(read_volume(path).data), crop)


def test_existing_target_is_refused_and_untouched(tmp_path, crop):
    path = write_volume(tmp_path / "keep.tif", crop, metadata={"run": 1})
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"overwrite=True.*another name"):
        write_volume(path, crop[:2], metadata={"run": 2})
    assert path.read_bytes() == before
    write_volume(path, crop[:2], metadata={"run": 2}, overwrite=True)
    assert read_metadata(path) == {"run": 2}
    assert read_volume(path).shape == (2, 64, 56)


def test_zarr_overwrite_replaces_store(tmp_path, crop):
    path = write_volume(tmp_path / "store.zarr", crop)
    with pytest.raises(FileExistsError):
        write_volume(path, crop[:1])
    assert read_volume(path).shape == (5, 64, 56)
    write_volume(path, crop[:1], overwrite=True, metadata={"v": 2})
    assert read_volume(path).shape == (1, 64, 56)
    assert read_metadata(path) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.zarr"]


def test_overwriting_the_file_a_lazy_volume_reads_from(tmp_path, crop):
    path = write_volume(tmp_path / "self.tif", crop)
    volume = read_volume(path)  # memory-mapped
    write_volume(path, volume.data[::-1], overwrite=True)
    np.testing.assert_array_equal(np.asarray(read_volume(path).data), crop[::-1])


def test_metadata_conversion_drops_what_json_cannot_hold(tmp_path, crop):
    @dataclass
    class Spec:
        pattern: str
        coverage: float

    metadata = {
        "spec": Spec("random", np.float64(0.1)),
        "path": Path("/data/run1"),
        "flags": {3, 1},
        "ok": np.bool_(True),
        "callback": print,
        "big": np.zeros(20_000),
        # keys the reader sets describe the source file, not parameters: not saved
        "format": "tiff",
        "source_path": "/elsewhere.tif",
        "voxel_size_nm": (1, 1, 1),
    }
    with pytest.warns(UserWarning, match="callback.*big"):
        path = write_volume(tmp_path / "meta.zarr", crop, metadata=metadata)
    assert read_metadata(path) == {
        "spec": {"pattern": "random", "coverage": 0.1},
        "path": "/data/run1",
        "flags": [1, 3],
        "ok": True,
    }
    assert read_volume(path).metadata["source_path"] == str(path)
