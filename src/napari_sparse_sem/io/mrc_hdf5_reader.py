"""MRC maps (memory-mapped data block, voxel size from the header in Å) and HDF5 datasets (a lazy dask array over
the h5py dataset that keeps the file open while it lives; voxel size from common attributes).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .formats import RawRead, valid_voxel
from .guards import VolumeReadError, check_size, lazy_array, short_error

# ----------------------------------------------------------------------------------------------------------- MRC


def read_mrc(file: Path, dataset: str | None, lazy: bool) -> RawRead:
    """MRC in (z, y, x) order; voxel size from the header (Å -> nm). Axis-permuted maps (MAPC/MAPR/MAPS) are read as
    stored."""
    import mrcfile
    import mrcfile.utils

    _check_mrc_extended_header(file)
    try:
        with mrcfile.open(file, mode="r", header_only=True) as mrc:
            header = mrc.header
            dtype = mrcfile.utils.data_dtype_from_header(header)
            shape = mrcfile.utils.data_shape_from_header(header)
            offset = header.nbytes + int(header.nsymbt)
            angstrom = mrc.voxel_size
    except FileNotFoundError:
        raise
    except Exception as err:  # mrcfile raises ValueError mostly, numpy others for a broken header
        raise VolumeReadError(
            f"{file} is not a valid MRC file; it may be corrupt or truncated ({short_error(err)})"
        ) from err
    size = file.stat().st_size
    check_size(file, shape, dtype, what="its MRC header")
    needed = offset + math.prod(int(n) for n in shape) * dtype.itemsize
    if size < needed:
        raise VolumeReadError(
            f"{file} is corrupt or truncated: its header describes {needed} bytes, the file has {size}"
        )
    voxel = valid_voxel((float(angstrom.z) / 10, float(angstrom.y) / 10, float(angstrom.x) / 10))
    if lazy:
        data = np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)
    else:
        data = np.fromfile(file, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
    return RawRead(data, voxel)


def _check_mrc_extended_header(file: Path) -> None:
    """Refuse an extended-header size (NSYMBT) beyond the file before mrcfile tries to read (and allocate) it."""
    with open(file, "rb") as fh:
        header = fh.read(1024)
    if len(header) < 1024 or header[212] not in (0x11, 0x44):
        return  # mrcfile reports a short header or an unknown machine stamp
    order = ">" if header[212] == 0x11 else "<"  # MACHST: 0x11 big-endian, 0x44 little-endian
    (nsymbt,) = struct.unpack(order + "i", header[92:96])
    size = file.stat().st_size
    if nsymbt < 0 or 1024 + nsymbt > size:
        raise VolumeReadError(
            f"{file} is corrupt or truncated: its MRC header announces an extended header of {nsymbt} bytes, the "
            f"file has {size}"
        )


# ---------------------------------------------------------------------------------------------------------- HDF5

_H5_VOXEL_ATTRS = (
    ("element_size_um", 1e3),  # ilastik / Fiji HDF5 plugin, micrometres (z, y, x)
    ("voxel_size_um", 1e3),
    ("voxel_size_nm", 1.0),
    ("voxel_size", 1.0),  # assumed nm
    ("resolution", 1.0),  # CREMI convention, nm (z, y, x)
    ("pixel_size_nm", 1.0),
)


def _h5_voxel_size(dset: Any, ndim: int) -> tuple[float, float, float] | None:
    for attrs in (dset.attrs, dset.parent.attrs, dset.file.attrs):
        for name, factor in _H5_VOXEL_ATTRS:
            if name not in attrs:
                continue
            values = np.atleast_1d(np.asarray(attrs[name], dtype=float)) * factor
            if values.size == 1:
                values = np.repeat(values, 3)
            elif values.size == 2 and ndim == 2:
                values = np.array([values[1], values[0], values[1]])
            return valid_voxel(values)
    return None


def read_hdf5(file: Path, dataset: str | None, lazy: bool) -> RawRead:
    """The one 2D/3D dataset of an HDF5 file (or ``dataset``); lazy reading keeps the file open."""
    import h5py

    try:
        handle = h5py.File(file, "r")
    except FileNotFoundError:
        raise
    except Exception as err:  # h5py raises OSError mostly
        raise VolumeReadError(
            f"{file} is not a readable HDF5 file; it may be corrupt or truncated ({short_error(err)})"
        ) from err
    try:
        candidates: list[str] = []
        handle.visititems(
            lambda name, obj: (
                candidates.append("/" + name) if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) else None
            )
        )
        if dataset is not None:
            key = "/" + dataset.strip("/")
            if key not in handle or not isinstance(handle[key], h5py.Dataset):
                listing = ", ".join(candidates) or "none"
                raise ValueError(f"{file} has no dataset {dataset!r}; 2D/3D datasets: {listing}")
        elif len(candidates) == 1:
            key = candidates[0]
        elif not candidates:
            raise ValueError(f"{file} holds no 2D or 3D dataset")
        else:
            raise ValueError(
                f"{file} holds several 2D/3D datasets ({', '.join(candidates)}); choose one with dataset='<name>' "
                f"or the path syntax '{file}:{candidates[0]}'"
            )
        dset = handle[key]
        _check_hdf5(dset, file)
        voxel = _h5_voxel_size(dset, dset.ndim)
        if lazy:
            chunks = (1, *dset.shape[1:]) if dset.ndim == 3 else dset.shape
            data = lazy_array(dset, file, chunks, lock=True)  # keeps `handle` open while data lives
        else:
            data = dset[()]
            handle.close()
    except BaseException:
        handle.close()
        raise
    return RawRead(data, voxel, None, {"dataset": key})


def _check_hdf5(dset: Any, file: Path) -> None:
    """Refuse an implausible dataset shape, and a contiguous dataset whose data would end beyond the file."""
    check_size(file, dset.shape, dset.dtype, what=f"its HDF5 dataset {dset.name!r}")
    try:
        offset = dset.id.get_offset()  # None unless contiguous and allocated
    except Exception:
        offset = None
    if offset is not None and dset.chunks is None:
        needed = int(offset) + math.prod(int(n) for n in dset.shape) * np.dtype(dset.dtype).itemsize
        size = file.stat().st_size
        if needed > size:
            raise VolumeReadError(
                f"{file} is corrupt or truncated: dataset {dset.name!r} needs bytes up to {needed}, the file has {size}"
            )
