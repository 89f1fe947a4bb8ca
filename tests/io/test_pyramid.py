"""Multiscale pyramids of our OME-Zarr stores: level shapes, 2 x 2 values on real data, masks, OME-Zarr validity,
re-runs, stops, the reader's levels and the same bytes from a dask.distributed cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_sparse_sem.io import pyramid as pyramid_module
from napari_sparse_sem.io import read_volume, write_volume
from napari_sparse_sem.io.formats import METADATA_KEY
from napari_sparse_sem.io.napari_hooks import read_layers
from napari_sparse_sem.io.pyramid import build_pyramid, halve_yx, level_chunks, pyramid_levels
from napari_sparse_sem.io.writers import metadata_block
from napari_sparse_sem.io.zarr_reader import ome_levels
from napari_sparse_sem.runtime import Cancelled

CROP = Path(__file__).resolve().parents[2] / "src" / "napari_sparse_sem" / "data" / "flyem_medulla_crop_z120-151.tif"


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """Six slices of the packaged FlyEM crop with odd y/x sizes (249 x 247)."""
    return np.ascontiguousarray(tifffile.imread(CROP)[:6, :249, :247])


def slab_store(path: Path, data: np.ndarray, chunks: tuple[int, int, int], voxel=(30.0, 10.0, 10.0)) -> Path:
    """An OME-Zarr 0.4 store laid out like the one the cluster path fills: array '0' in (slab, tile, tile) chunks."""
    import numcodecs

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = root.create_array(
        "0",
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        compressors=numcodecs.Blosc(cname="zstd", clevel=3),
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        config={"write_empty_chunks": True},
    )
    array[...] = data
    scale = {"type": "scale", "scale": list(voxel)}
    multiscale = {
        "version": "0.4",
        "name": "crop",
        "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [scale]}],
    }
    root.attrs.update({"multiscales": [multiscale], METADATA_KEY: metadata_block(data.dtype, voxel)})
    return path


def mean_reference(image: np.ndarray) -> np.ndarray:
    """2 x 2 mean in y/x with the edge repeated for odd sizes, rounded half up for integers (plain numpy)."""
    nz, ny, nx = image.shape
    padded = np.pad(image.astype(np.float64), ((0, 0), (0, ny % 2), (0, nx % 2)), mode="edge")
    mean = padded.reshape(nz, (ny + 1) // 2, 2, (nx + 1) // 2, 2).mean(axis=(2, 4))
    return np.floor(mean + 0.5).astype(image.dtype) if image.dtype.kind in "iu" else mean.astype(image.dtype)


def level_files(path: Path) -> dict[str, bytes]:
    """Every file of levels 1.. (chunks and array metadata) by relative path."""
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and f.relative_to(path).parts[0] not in ("0", ".zattrs", ".zgroup")
    }


def datasets(path: Path) -> list[dict]:
    return dict(zarr.open_group(str(path), mode="r").attrs)["multiscales"][0]["datasets"]


def test_levels_halve_y_and_x_with_ceil_until_min_size():
    assert pyramid_levels((3, 1025, 600), (1, 512, 512)) == [(3, 513, 300), (3, 257, 150)]
    assert pyramid_levels((7, 249, 247), (2, 64, 64), min_size=32) == [(7, 125, 124), (7, 63, 62), (7, 32, 31)]
    assert pyramid_levels((2, 200, 255), (1, 64, 64)) == []  # already below min_size
    assert pyramid_levels((1, 5, 3), min_size=1) == [(1, 3, 2), (1, 2, 1), (1, 1, 1)]
    assert level_chunks((7, 125, 124), (2, 64, 64)) == (2, 64, 64)
    assert level_chunks((7, 32, 31), (2, 64, 64)) == (2, 32, 31)
    with pytest.raises(ValueError, match="min_size"):
        pyramid_levels((1, 8, 8), min_size=0)
    with pytest.raises(ValueError, match="chunks"):
        pyramid_levels((1, 8, 8), (1, 0, 8))


def test_integer_mean_rounds_half_up_without_overflow():
    edge = np.array([[[-128, -127, 127, 127, 5], [-128, -127, 127, 127, 6]]], np.int8)
    np.testing.assert_array_equal(halve_yx(edge), [[[-127, 127, 6]]])  # -127.5 -> -127; 5.5 -> 6 (x edge repeated)
    full = np.full((1, 3, 3), 255, np.uint8)
    np.testing.assert_array_equal(halve_yx(full), np.full((1, 2, 2), 255, np.uint8))


def test_levels_equal_a_numpy_mean_on_real_data(tmp_path, crop):
    path = slab_store(tmp_path / "crop.zarr", crop, chunks=(2, 64, 64))
    events = []
    shapes = build_pyramid(path, min_size=32, on_progress=events.append)
    assert shapes == [(6, 249, 247), (6, 125, 124), (6, 63, 62), (6, 32, 31)]
    assert events[-1].step == events[-1].total == 9  # three z-slabs per level, whole slices per task
    root = zarr.open_group(str(path), mode="r")
    reference = crop
    for k in (1, 2, 3):
        reference = mean_reference(reference)
        level = root[str(k)]
        assert level.dtype == np.uint8 and level.chunks == level_chunks(shapes[k], (2, 64, 64))
        assert level.compressors == root["0"].compressors
        np.testing.assert_array_equal(level[...], reference)
    assert [d["coordinateTransformations"][0]["scale"] for d in datasets(path)] == [
        [30.0, 10.0, 10.0],
        [30.0, 20.0, 20.0],
        [30.0, 40.0, 40.0],
        [30.0, 80.0, 80.0],
    ]
    assert read_volume(path).shape == (6, 249, 247)  # the Python API keeps reading level 0
    levels = ome_levels(path)
    assert [lv.shape for lv in levels] == shapes and all(type(lv) is not np.ndarray for lv in levels)


def test_float_levels_and_tiles_give_the_same_values(tmp_path, crop, monkeypatch):
    data = crop[:3].astype(np.float32) / 255.0
    whole = slab_store(tmp_path / "whole.zarr", data, chunks=(1, 64, 64))
    build_pyramid(whole, min_size=100)
    monkeypatch.setattr(pyramid_module, "MAX_BLOCK_BYTES", 0)  # one task per output tile
    tiled = slab_store(tmp_path / "tiled.zarr", data, chunks=(1, 64, 64))
    events = []
    build_pyramid(tiled, min_size=100, on_progress=events.append)
    assert events[-1].total == 3 * 2 * 2  # 3 slices x 2 x 2 tiles of 64 in 125 x 124
    level = zarr.open_group(str(tiled), mode="r")["1"][...]
    np.testing.assert_allclose(level, mean_reference(data), rtol=0, atol=1e-7)
    assert level_files(whole) == level_files(tiled)


def test_masks_stay_zero_one_and_keep_their_coverage(tmp_path):
    mask = np.random.default_rng(3).random((4, 130, 97)) < 0.1
    path = write_volume(tmp_path / "mask.zarr", mask, voxel_size=(30, 10, 10))
    assert build_pyramid(path, min_size=30) == [(4, 130, 97), (4, 65, 49), (4, 33, 25)]
    root = zarr.open_group(str(path), mode="r")
    assert dict(root.attrs)["multiscales"][0]["type"] == "nearest"
    np.testing.assert_array_equal(root["1"][...], mask[:, ::2, ::2])
    np.testing.assert_array_equal(root["2"][...], mask[:, ::4, ::4])
    assert set(np.unique(root["2"][...])) <= {0, 1}
    [(data, kwargs, kind)] = read_layers(str(path))
    assert kind == "labels" and kwargs["multiscale"] is True
    assert [d.dtype for d in data] == [np.uint8] * 3
    np.testing.assert_array_equal(np.asarray(data[2]), mask[:, ::4, ::4])


def test_store_validates_with_ome_zarr_py(tmp_path, crop):
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    path = write_volume(tmp_path / "crop.ome.zarr", crop, voxel_size=(30.0, 8.0, 8.0))
    shapes = build_pyramid(path, min_size=50)
    [image] = list(Reader(parse_url(str(path), fmt=FormatV04()))())
    assert any(isinstance(spec, Multiscales) for spec in image.specs)
    assert [tuple(level.shape) for level in image.data] == shapes == [(6, 249, 247), (6, 125, 124), (6, 63, 62)]
    scales = [t[0]["scale"] for t in image.metadata["coordinateTransformations"]]
    assert scales == [[30.0, 8.0, 8.0], [30.0, 16.0, 16.0], [30.0, 32.0, 32.0]]
    np.testing.assert_array_equal(np.asarray(image.data[1]), mean_reference(crop))
    models = pytest.importorskip("ome_zarr_models.v04")  # the NGFF 0.4 schema, strictly (scales must grow)
    validated = models.Image.from_zarr(zarr.open_group(str(path), mode="r"))
    assert [d.path for d in validated.attributes.multiscales[0].datasets] == ["0", "1", "2"]


def test_rerun_replaces_levels_and_a_stop_leaves_a_valid_shorter_pyramid(tmp_path, crop):
    path = slab_store(tmp_path / "crop.zarr", crop, chunks=(2, 64, 64))
    build_pyramid(path, min_size=32)
    first, first_datasets = level_files(path), datasets(path)
    build_pyramid(path, min_size=32)
    assert level_files(path) == first and datasets(path) == first_datasets

    build_pyramid(path, min_size=100)  # fewer levels: the others are removed, not left behind
    assert [d["path"] for d in datasets(path)] == ["0", "1"]
    assert sorted(zarr.open_group(str(path), mode="r").array_keys()) == ["0", "1"]

    messages: list[str] = []
    with pytest.raises(Cancelled):  # stopped after the first block of level 2: level 1 is complete and listed
        build_pyramid(
            path,
            min_size=32,
            on_progress=lambda event: messages.append(event.message),
            should_stop=lambda: messages[-1].startswith("pyramid level 2"),
        )
    assert [d["path"] for d in datasets(path)] == ["0", "1"]
    assert [lv.shape for lv in ome_levels(path)] == [(6, 249, 247), (6, 125, 124)]
    build_pyramid(path, min_size=32)
    assert level_files(path) == first and datasets(path) == first_datasets

    build_pyramid(path, min_size=1000)
    multiscale = dict(zarr.open_group(str(path), mode="r").attrs)["multiscales"][0]
    assert [d["path"] for d in multiscale["datasets"]] == ["0"] and "type" not in multiscale


def test_cluster_writes_the_same_bytes_as_this_process(tmp_path, crop, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(pyramid_module, "MAX_BLOCK_BYTES", 0)  # many small tasks: a tile of a slab each
    local = slab_store(tmp_path / "local.zarr", crop, chunks=(2, 64, 64))
    remote = slab_store(tmp_path / "remote.zarr", crop, chunks=(2, 64, 64))
    shapes = build_pyramid(local, min_size=60)
    with (
        distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        events = []
        assert build_pyramid(remote, min_size=60, client=client, on_progress=events.append) == shapes
        assert events[-1].step == events[-1].total == 3 * 2 * 2 + 3 * 1 * 1
        assert level_files(remote) == level_files(local) and datasets(remote) == datasets(local)
        with pytest.raises(Cancelled):  # a stop after the first finished block cancels the blocks not started
            seen: list = []
            build_pyramid(
                remote, min_size=60, client=client, on_progress=seen.append, should_stop=lambda: len(seen) > 1
            )
        assert [d["path"] for d in datasets(remote)] == ["0"]
        build_pyramid(remote, min_size=60, client=client)
    assert level_files(remote) == level_files(local) and datasets(remote) == datasets(local)


def test_reader_keeps_the_levels_that_make_a_pyramid(tmp_path, crop):
    path = slab_store(tmp_path / "crop.zarr", crop, chunks=(2, 64, 64))
    build_pyramid(path, min_size=32)
    root = zarr.open_group(str(path), mode="r+")
    attrs = dict(root.attrs)
    attrs["multiscales"][0]["datasets"][2]["path"] = "1"  # level 2 names level 1 again: not half of it
    root.attrs.update(attrs)
    with pytest.warns(UserWarning, match="levels from 2 on are left out"):
        assert [lv.shape for lv in ome_levels(path)] == [(6, 249, 247), (6, 125, 124)]
    attrs["multiscales"][0]["datasets"][1]["path"] = "missing"
    root.attrs.update(attrs)
    with pytest.warns(UserWarning, match="levels from 1 on are left out"):
        [(data, kwargs, kind)] = read_layers(str(path))
    assert kind == "image" and "multiscale" not in kwargs and data.shape == (6, 249, 247)
