"""read_volume on every format: data, (z, y, x) order, voxel size in nm and lazy reading, on real FlyEM crops."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import h5py
import imageio.v3 as iio
import mrcfile
import numpy as np
import pytest
import tifffile
import zarr

from napari_sparse_sem.io import detect_format, read_metadata, read_volume
from napari_sparse_sem.io.readers import unit_to_nm


def _is_loaded(data: object) -> bool:
    """True for a plain in-memory numpy array (not a memmap, dask or zarr array)."""
    return type(data) is np.ndarray


@pytest.fixture(scope="module")
def crop(flyem_crop_uint8: np.ndarray) -> np.ndarray:
    """A small real crop, (6, 48, 40) uint8 (not square, so axis mix-ups show)."""
    return np.ascontiguousarray(flyem_crop_uint8[:6, 10:58, 20:60])


# --------------------------------------------------------------------------------------------------------- TIFF


def test_shared_flyem_volume_reads_lazily_with_10nm_voxels(flyem_volume_path: Path, flyem_crop_uint8: np.ndarray):
    # ImageJ metadata of this file says channels=250 (no 'slices'), spacing 0.01, unit 'um', XResolution 100
    volume = read_volume(flyem_volume_path)
    assert volume.shape == (250, 250, 250)
    assert volume.data.dtype == np.uint8
    assert volume.voxel_size == (10.0, 10.0, 10.0)
    assert volume.name == "flyem_medulla_fibsem_sample1"
    assert isinstance(volume.data, np.memmap) and not _is_loaded(volume.data)
    assert volume.metadata["format"] == "tiff" and volume.metadata["lazy"] is True
    assert volume.metadata["source_path"] == str(flyem_volume_path)
    assert volume.metadata["dtype"] == "uint8"
    # slices 120..151 are the packaged crop: z really is the first axis
    np.testing.assert_array_equal(volume.data[125], flyem_crop_uint8[5])
    assert read_metadata(flyem_volume_path) == {}


def test_packaged_crop_eager_read(flyem_crop_uint8: np.ndarray):
    path = Path(__file__).resolve().parents[2] / "src/napari_sparse_sem/data/flyem_medulla_crop_z120-151.tif"
    volume = read_volume(path, lazy=False)
    assert _is_loaded(volume.data)
    assert volume.metadata["lazy"] is False
    assert volume.voxel_size == (10.0, 10.0, 10.0)
    np.testing.assert_array_equal(volume.data, flyem_crop_uint8)


@pytest.mark.parametrize(
    ("unit", "pixels_per_unit", "spacing", "expected"),
    [
        ("micron", 250.0, 0.01, (10.0, 4.0, 4.0)),
        ("um", 200.0, 0.008, (8.0, 5.0, 5.0)),
        ("\\u00B5m", 100.0, 0.03, (30.0, 10.0, 10.0)),
        ("nm", 0.25, 6.0, (6.0, 4.0, 4.0)),
    ],
)
def test_imagej_tiff_voxel_size_units(tmp_path, crop, unit, pixels_per_unit, spacing, expected):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path,
        crop,
        imagej=True,
        resolution=(pixels_per_unit, pixels_per_unit),
        metadata={"axes": "ZYX", "spacing": spacing, "unit": unit},
    )
    volume = read_volume(path)
    assert volume.voxel_size == pytest.approx(expected)
    np.testing.assert_array_equal(volume.data, crop)


@pytest.mark.parametrize(
    ("unit", "nm"),
    [("µm", 1000.0), ("μm", 1000.0), ("micron", 1000.0), ("nanometer", 1.0), ("Å", 0.1), ("pixel", None), (None, None)],
)
def test_unit_to_nm(unit, nm):
    assert unit_to_nm(unit) == nm


def test_imagej_stack_without_spacing_uses_one_unit_like_imagej(tmp_path, crop):
    path = tmp_path / "nospacing.tif"
    tifffile.imwrite(path, crop, imagej=True, resolution=(200.0, 200.0), metadata={"axes": "ZYX", "unit": "um"})
    assert read_volume(path).voxel_size == (1000.0, 5.0, 5.0)


def test_ome_tiff_physical_size(tmp_path, crop):
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        path,
        crop,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.004,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": 5.0,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 0.02,
            "PhysicalSizeZUnit": "µm",
        },
    )
    volume = read_volume(path)
    assert volume.name == "stack"
    assert volume.voxel_size == pytest.approx((20.0, 5.0, 4.0))
    np.testing.assert_array_equal(volume.data, crop)


def test_compressed_tiff_is_lazy_dask(tmp_path, crop):
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, crop, compression="zlib")
    volume = read_volume(path)
    assert isinstance(volume.data, da.Array)
    np.testing.assert_array_equal(volume.data[3].compute(), crop[3])
    np.testing.assert_array_equal(read_volume(path, lazy=False).data, crop)
    assert volume.voxel_size is None  # a plain TIFF says nothing reliable about pixel size


def test_2d_tiff_is_one_slice_volume(tmp_path, crop):
    path = tmp_path / "slice.tif"
    tifffile.imwrite(path, crop[2], imagej=True, resolution=(250.0, 250.0), metadata={"unit": "um"})
    volume = read_volume(path)
    assert volume.shape == (1, 48, 40)
    assert volume.voxel_size == (4.0, 4.0, 4.0)
    np.testing.assert_array_equal(volume.data[0], crop[2])


def test_singleton_channel_axis_is_dropped(tmp_path, crop):
    path = tmp_path / "czyx.tif"
    tifffile.imwrite(path, crop[:, None], imagej=True, metadata={"axes": "ZCYX"})
    np.testing.assert_array_equal(read_volume(path).data, crop)


# ------------------------------------------------------------------------------------------- folder of slices


def test_folder_of_slices_natural_order_and_lazy(tmp_path, crop):
    folder = tmp_path / "slices"
    folder.mkdir()
    stack = np.concatenate([crop, crop[:, ::-1]])  # 12 distinct slices
    for z, plane in enumerate(stack):
        tifffile.imwrite(
            folder / f"slice_{z + 1}.tif", plane, imagej=True, resolution=(125.0, 125.0), metadata={"unit": "um"}
        )
    (folder / "notes.txt").write_text("not a slice")
    assert detect_format(folder) == "folder"
    volume = read_volume(folder)
    assert isinstance(volume.data, da.Array)
    assert volume.shape == (12, 48, 40)
    assert volume.name == "slices"
    # lexical order would put slice_10 after slice_1; natural order keeps z
    np.testing.assert_array_equal(volume.data.compute(), stack)
    assert volume.voxel_size == (8.0, 8.0, 8.0)
    assert "assumed" in volume.metadata["voxel_size_note"]
    np.testing.assert_array_equal(read_volume(folder, lazy=False).data, stack)


def test_folder_of_png_slices(tmp_path, crop):
    folder = tmp_path / "png"
    folder.mkdir()
    for z, plane in enumerate(crop):
        iio.imwrite(folder / f"img{z:02d}.png", plane)
    volume = read_volume(folder)
    assert volume.voxel_size is None
    np.testing.assert_array_equal(np.asarray(volume.data), crop)


# ---------------------------------------------------------------------------------------------------------- zarr


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plain_zarr_array_v2_and_v3(tmp_path, crop, zarr_format):
    path = tmp_path / f"plain{zarr_format}.zarr"
    array = zarr.create_array(
        str(path), shape=crop.shape, chunks=(1, 48, 40), dtype=crop.dtype, zarr_format=zarr_format
    )
    array[:] = crop
    volume = read_volume(path)
    assert isinstance(volume.data, da.Array)
    assert volume.metadata["format"] == "zarr"
    np.testing.assert_array_equal(volume.data.compute(), crop)
    assert _is_loaded(read_volume(path, lazy=False).data)


def test_zarr_group_with_one_or_several_arrays(tmp_path, crop):
    path = tmp_path / "group.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_group("raw").create_array("em", data=crop)
    np.testing.assert_array_equal(np.asarray(read_volume(path).data), crop)
    group.create_array("labels", data=crop > 100)
    with pytest.raises(ValueError, match=r"several arrays.*labels.*raw/em"):
        read_volume(path)
    volume = read_volume(path, dataset="raw/em")
    assert volume.metadata["dataset"] == "raw/em"
    np.testing.assert_array_equal(np.asarray(volume.data), crop)


def test_ome_zarr_v05_written_by_ome_zarr(tmp_path, crop):
    from ome_zarr.writer import write_image

    path = tmp_path / "image.ome.zarr"
    write_image(
        crop,
        str(path),
        axes="zyx",
        scale={"z": 0.03, "y": 0.004, "x": 0.004},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        scale_factors=(2,),
    )
    volume = read_volume(path)
    assert volume.name == "image"
    assert volume.voxel_size == pytest.approx((30.0, 4.0, 4.0))
    assert volume.metadata["n_levels"] == 2
    np.testing.assert_array_equal(volume.data.compute(), crop)


def test_ome_zarr_v04_drops_singleton_channel(tmp_path, crop):
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    path = tmp_path / "czyx.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    write_image(
        crop[None],
        group,
        axes="czyx",
        fmt=FormatV04(),
        scale={"c": 1.0, "z": 12.0, "y": 6.0, "x": 6.0},
        axes_units={"z": "nanometer", "y": "nanometer", "x": "nanometer"},
        scale_factors=None,
    )
    volume = read_volume(path)
    assert volume.shape == crop.shape
    assert volume.voxel_size == pytest.approx((12.0, 6.0, 6.0))
    np.testing.assert_array_equal(volume.data.compute(), crop)


# ----------------------------------------------------------------------------------------------------------- MRC


def test_mrc_memmap_and_angstrom_voxels(tmp_path, crop):
    path = tmp_path / "tomo.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(crop)
        mrc.voxel_size = (40.0, 50.0, 120.0)  # x, y, z in Å
    volume = read_volume(path)
    assert isinstance(volume.data, np.memmap)
    assert volume.voxel_size == (12.0, 5.0, 4.0)
    np.testing.assert_array_equal(volume.data, crop)
    loaded = read_volume(path, lazy=False)
    assert _is_loaded(loaded.data)
    np.testing.assert_array_equal(loaded.data, crop)


# ---------------------------------------------------------------------------------------------------------- HDF5


def test_hdf5_single_dataset_lazy_with_element_size(tmp_path, crop):
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("volumes/raw", data=crop)
        dset.attrs["element_size_um"] = (0.02, 0.005, 0.005)
        f.create_dataset("info/ids", data=np.arange(5))  # 1D: not a candidate
    volume = read_volume(path)
    assert isinstance(volume.data, da.Array)
    assert volume.metadata["dataset"] == "/volumes/raw"
    assert volume.voxel_size == (20.0, 5.0, 5.0)
    np.testing.assert_array_equal(volume.data.compute(), crop)
    loaded = read_volume(path, lazy=False)
    assert _is_loaded(loaded.data)
    np.testing.assert_array_equal(loaded.data, crop)


def test_hdf5_named_dataset_and_path_syntax(tmp_path, crop):
    path = tmp_path / "two.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=crop)
        f.create_dataset("aux/mask", data=(crop > 120).astype(np.uint8))
    with pytest.raises(ValueError, match=r"several 2D/3D datasets \(/aux/mask, /raw\)"):
        read_volume(path)
    np.testing.assert_array_equal(np.asarray(read_volume(path, dataset="raw").data), crop)
    by_path = read_volume(f"{path}:/aux/mask")
    assert by_path.metadata["dataset"] == "/aux/mask"
    np.testing.assert_array_equal(np.asarray(by_path.data), crop > 120)
    assert detect_format(f"{path}:/aux/mask") == "hdf5"
