"""Bad files and bad arguments give clear errors that name the file and say what to do; nothing is left half-written."""

from __future__ import annotations

import h5py
import imageio.v3 as iio
import mrcfile
import numpy as np
import pytest
import tifffile
import zarr

from napari_sparse_sem.io import read_volume, write_volume


@pytest.fixture(scope="module")
def crop(flyem_crop_uint8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(flyem_crop_uint8[20:26, 100:140, 100:150])  # (6, 40, 50)


def _truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("name", ["missing.tif", "missing.zarr", "missing.mrc", "missing.h5", "missing_folder"])
def test_missing_path(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=f"{name} does not exist"):
        read_volume(tmp_path / name)


def test_missing_h5_with_dataset_syntax(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.h5 does not exist"):
        read_volume(f"{tmp_path / 'nothere.h5'}:/raw")


@pytest.mark.parametrize(
    "write",
    [
        lambda p, a: tifffile.imwrite(p, a, imagej=True, metadata={"axes": "ZYX"}),
        lambda p, a: tifffile.imwrite(p, a),
        lambda p, a: tifffile.imwrite(p, a, compression="zlib"),
        lambda p, a: write_volume(p, a),
    ],
    ids=["imagej", "shaped", "zlib", "ours"],
)
@pytest.mark.parametrize("lazy", [True, False])
def test_truncated_tiff_is_reported_as_corrupt(tmp_path, crop, write, lazy):
    path = tmp_path / "cut.tif"
    write(path, crop)
    _truncate(path)
    with pytest.raises(ValueError, match=r"cut\.tif.*(corrupt or truncated)"):
        read_volume(path, lazy=lazy)


def test_garbage_tiff(tmp_path):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(ValueError, match=r"garbage\.tif.*corrupt or truncated"):
        read_volume(path)


def test_unknown_extension_lists_supported_formats(tmp_path):
    path = tmp_path / "volume.nrrd"
    path.write_bytes(b"NRRD0004")
    with pytest.raises(ValueError, match=r"unsupported file type '\.nrrd'.*TIFF.*slices.*zarr.*MRC.*HDF5"):
        read_volume(path)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match=r"folder without \.tif/\.tiff/\.png slices"):
        read_volume(tmp_path)


def test_rgb_tiff_is_refused_with_advice(tmp_path, crop):
    path = tmp_path / "color.tif"
    tifffile.imwrite(path, np.stack([crop[0]] * 3, axis=-1), photometric="rgb")
    with pytest.raises(ValueError, match=r"RGB.*convert it to grayscale"):
        read_volume(path)


def test_4d_tiff_is_refused(tmp_path, crop):
    path = tmp_path / "tzyx.tif"
    tifffile.imwrite(path, np.stack([crop, crop]), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(ValueError, match=r"4 non-trivial dimensions.*select one channel/time point"):
        read_volume(path)


def test_folder_with_an_odd_slice_names_it(tmp_path, crop):
    for z in range(3):
        tifffile.imwrite(tmp_path / f"s{z}.tif", crop[z])
    tifffile.imwrite(tmp_path / "s3.tif", crop[3, :20])
    with pytest.raises(ValueError, match=r"slice s3\.tif has shape \(20, 50\).*s0\.tif has \(40, 50\)"):
        read_volume(tmp_path)


def test_folder_with_rgb_png(tmp_path, crop):
    iio.imwrite(tmp_path / "a.png", crop[0])
    iio.imwrite(tmp_path / "b.png", np.stack([crop[1]] * 3, axis=-1))
    with pytest.raises(ValueError, match=r"b\.png has shape \(40, 50, 3\).*grayscale"):
        read_volume(tmp_path)


def test_ome_zarr_with_several_channels(tmp_path, crop):
    from ome_zarr.writer import write_image

    path = tmp_path / "two_channels.zarr"
    write_image(np.stack([crop, crop]), str(path), axes="czyx", scale_factors=None)
    with pytest.raises(ValueError, match=r"2 channels along axis 'c'.*select one channel"):
        read_volume(path)


def test_ome_zarr_with_four_spatial_axes(tmp_path, crop):
    path = tmp_path / "4d.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=np.stack([crop, crop]))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": n, "type": "space"} for n in "wzyx"],
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 1]}]}],
        }
    ]
    with pytest.raises(ValueError, match="4 spatial/unknown axes"):
        read_volume(path)


def test_zarr_dataset_that_does_not_exist(tmp_path, crop):
    path = tmp_path / "g.zarr"
    zarr.open_group(str(path), mode="w").create_array("raw", data=crop)
    with pytest.raises(ValueError, match="no array 'labels'; arrays: raw"):
        read_volume(path, dataset="labels")


def test_truncated_mrc(tmp_path, crop):
    path = tmp_path / "cut.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(crop)
    _truncate(path, 0.6)
    with pytest.raises(ValueError, match=r"cut\.mrc is corrupt or truncated"):
        read_volume(path)


def test_hdf5_errors_list_the_candidates(tmp_path, crop):
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        f["a"] = crop
        f["b/c"] = crop[0]
        f["v"] = np.arange(3)
    with pytest.raises(ValueError, match=r"several 2D/3D datasets \(/a, /b/c\).*dataset="):
        read_volume(path)
    with pytest.raises(ValueError, match=r"no dataset 'zz'; 2D/3D datasets: /a, /b/c"):
        read_volume(path, dataset="zz")
    with pytest.raises(ValueError, match="names dataset '/a' but dataset='b/c'"):
        read_volume(f"{path}:/a", dataset="b/c")


def test_hdf5_not_hdf5(tmp_path):
    path = tmp_path / "fake.h5"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"fake\.h5 is not a readable HDF5 file"):
        read_volume(path)


def test_dataset_argument_for_a_tiff(tmp_path, crop):
    path = write_volume(tmp_path / "v.tif", crop)
    with pytest.raises(ValueError, match="only applies to HDF5 files and zarr groups"):
        read_volume(path, dataset="raw")


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (np.zeros((2, 3, 8, 8)), {}, "4 dimensions"),
        (np.zeros((4, 8, 8), complex), {}, "dtype complex128"),
        (np.zeros((4, 8, 8)), {"voxel_size": (10, -1, 4)}, "three positive numbers"),
        (np.zeros((4, 8, 8)), {"voxel_size": "10nm"}, "voxel_size must be"),
        (np.full((2, 8, 8), 2**40, np.int64), {}, r"save as \.zarr instead"),
    ],
)
def test_write_volume_bad_arguments_leave_nothing_behind(tmp_path, data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_volume(tmp_path / "out.tif", data, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_write_volume_unknown_extension(tmp_path, crop):
    with pytest.raises(ValueError, match=r"unknown extension \.png; use one of: ImageJ TIFF.*OME-Zarr"):
        write_volume(tmp_path / "out.png", crop)


def test_write_volume_refuses_to_replace_a_plain_folder(tmp_path, crop):
    folder = tmp_path / "precious.zarr"
    folder.mkdir()
    (folder / "thesis.txt").write_text("do not delete")
    with pytest.raises(ValueError, match="not a zarr store; refusing to replace it"):
        write_volume(folder, crop, overwrite=True)
    assert (folder / "thesis.txt").read_text() == "do not delete"
