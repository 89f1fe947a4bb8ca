"""Read FIB-SEM volumes from TIFF, folders of slices, zarr/OME-Zarr, MRC and HDF5 into one (z, y, x) :class:`Volume`.

Every format ends in the same model: ``Volume.data`` is (z, y, x) (a 2D file becomes a one-slice volume),
``Volume.voxel_size`` is (z, y, x) in nm when the file says so, and ``Volume.metadata`` holds the reader's facts
(``format``, ``source_path``, ``dtype``, ``lazy``, sometimes ``dataset`` or ``voxel_size_note``) merged over the
parameters we saved when the file was written by :func:`~napari_sparse_sem.io.writers.write_volume`.

Lazy reading (the default) keeps memory bounded by what is touched:

* TIFF: ``numpy.memmap`` when the pixel data is uncompressed and contiguous, else a dask array over tifffile's zarr
  store (the TIFF stays open while the array lives).
* folder of slices: a dask stack with one delayed read per file.
* zarr / OME-Zarr: a dask array over the zarr array (level 0 of a multiscale image).
* MRC: ``numpy.memmap`` of the data block.
* HDF5: a dask array over the h5py dataset, one chunk per slice; **the HDF5 file stays open** as long as the array
  (or anything built from it) is alive, because the dataset reads from the open file. Use ``lazy=False`` to read
  everything and close the file at once.

Import cost is kept low: zarr, dask, h5py and mrcfile are imported only when a file of that kind is read.

Layout: this module dispatches (:func:`read_volume`, :func:`read_metadata`) and re-exports the public names; the
formats and path matching live in :mod:`.formats`, the format readers in :mod:`.tiff_reader` (TIFF and slice
folders), :mod:`.zarr_reader` (zarr, OME-Zarr) and :mod:`.mrc_hdf5_reader`, the hostile-file guards in :mod:`.guards`.

Hostile files (issue #15). :func:`read_volume` returns a :class:`Volume` or raises one of three things:
``FileNotFoundError`` (no such path), a plain ``ValueError`` for a readable file we do not support (unknown type,
RGB, 4D, a dataset name that is wrong or missing) or :class:`VolumeReadError` (also a ``ValueError``) for a file that
cannot be read: corrupt, truncated, a header that lies, or too big to be real. Every message is one line that names
the file. Anything else a library raises (``ZeroDivisionError``, ``struct.error``, a codec's ``DeflateError``,
``MemoryError`` ...) is turned into a :class:`VolumeReadError`; ``KeyboardInterrupt`` and ``SystemExit`` pass.
To get there:

* headers are checked before any array is made: one slice at most :data:`MAX_SLICE_BYTES`, the volume at most
  :data:`MAX_VOLUME_BYTES`, and what the file can hold bounds what it may claim (uncompressed data must fit in the
  file; compressed TIFF/PNG data at most :data:`MAX_COMPRESSION_RATIO` times the file size);
* pixels are decoded once at open: the whole volume when it is at most :data:`EAGER_DECODE_BYTES`, else the middle
  slice (napari draws it first) and the first slice when that is small. The decoded pixels are dropped: laziness
  and the ``lazy`` metadata are unchanged (memory-mapped data needs no decoding and is not read);
* lazy arrays that decode (compressed TIFF, zarr, HDF5) read through a wrapper, so a corrupt chunk met later, when
  napari draws another slice, raises a :class:`VolumeReadError` naming the file and slice, not a codec error;
* zarr chunks that are not stored read as the fill value. When an array has at most :data:`MAX_COUNTED_CHUNKS`
  chunks we count them: missing ones give a ``UserWarning`` and ``metadata['missing_chunks']``. It is a warning, not
  an error: other tools skip chunks that hold only the fill value on purpose (``write_empty_chunks`` is off by default
  in zarr 3), so there a deleted chunk cannot be told from an empty one. Our writers store every chunk, so in a store
  we wrote a missing chunk means damage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .formats import (
    HDF5_SUFFIXES,
    INFO_MARKER,
    METADATA_KEY,
    MRC_SUFFIXES,
    READER_KEYS,
    SLICE_SUFFIXES,
    SUPPORTED_FORMATS,
    TIFF_SUFFIXES,
    ZARR_MARKERS,
    ZARR_SUFFIXES,
    detect_format,
    is_zarr_dir,
    split_h5_path,
    supported_text,
    unit_to_nm,
    valid_voxel,
)
from .guards import (
    DEFAULT_MAX_COMPRESSION_RATIO,
    EAGER_DECODE_BYTES,
    MAX_CHUNKS_PER_AXIS,
    MAX_COMPRESSION_RATIO,
    MAX_COUNTED_CHUNKS,
    MAX_SLICE_BYTES,
    MAX_VOLUME_BYTES,
    VolumeReadError,
    check_size,
    decode_now,
    lazy_array,
    read_errors,
    short_error,
    size_text,
)
from .mrc_hdf5_reader import read_hdf5, read_mrc
from .tiff_reader import open_tiff, quiet_tifffile, read_folder, read_tiff, saved_from_tiff
from .volume import Volume, as_zyx
from .zarr_reader import read_zarr, saved_from_zarr

_is_zarr_dir = is_zarr_dir  # the name writers.py and older code import

__all__ = [
    "DEFAULT_MAX_COMPRESSION_RATIO",
    "EAGER_DECODE_BYTES",
    "HDF5_SUFFIXES",
    "INFO_MARKER",
    "MAX_CHUNKS_PER_AXIS",
    "MAX_COMPRESSION_RATIO",
    "MAX_COUNTED_CHUNKS",
    "MAX_SLICE_BYTES",
    "MAX_VOLUME_BYTES",
    "METADATA_KEY",
    "MRC_SUFFIXES",
    "READER_KEYS",
    "SLICE_SUFFIXES",
    "SUPPORTED_FORMATS",
    "TIFF_SUFFIXES",
    "ZARR_MARKERS",
    "ZARR_SUFFIXES",
    "Volume",
    "VolumeReadError",
    "as_zyx",
    "check_size",
    "decode_now",
    "detect_format",
    "lazy_array",
    "read_errors",
    "read_metadata",
    "read_volume",
    "short_error",
    "size_text",
    "split_h5_path",
    "unit_to_nm",
]

_READERS = {"tiff": read_tiff, "folder": read_folder, "zarr": read_zarr, "mrc": read_mrc, "hdf5": read_hdf5}
"""One reader per format: ``reader(file, dataset, lazy) -> RawRead``."""


def read_volume(path: str | Path, *, dataset: str | None = None, lazy: bool = True) -> Volume:
    """Read a 2D image or 3D stack as a (z, y, x) :class:`Volume` (lazy by default; see the module docstring).

    ``dataset`` names the array inside an HDF5 file or a zarr group ('file.h5:/group/ds' works too). A lazy HDF5
    volume keeps its file open while the array lives. ``metadata`` = saved parameters (files we wrote) overlaid
    with 'format', 'source_path', 'dtype', 'lazy' (and 'dataset', 'missing_chunks' where they apply). Masks we saved
    come back as bool. Raises FileNotFoundError for a missing path, VolumeReadError for a file that cannot be read
    (corrupt, truncated, implausible header) and ValueError for unsupported, RGB or 4D+ data or a wrong dataset.
    """
    file, inner = split_h5_path(path)
    if inner is not None and dataset is not None and inner.strip("/") != dataset.strip("/"):
        raise ValueError(f"{path!s} names dataset {inner!r} but dataset={dataset!r} was also given; use one of them")
    dataset = dataset if dataset is not None else inner
    with read_errors(file), quiet_tifffile():
        return _read_volume(file, dataset, lazy)


def _read_volume(file: Path, dataset: str | None, lazy: bool) -> Volume:
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    fmt = detect_format(file)
    if fmt is None:
        if file.is_dir():
            raise ValueError(
                f"{file} is a folder without .tif/.tiff/.png slices or zarr metadata; supported: {supported_text()}"
            )
        raise ValueError(f"{file} has an unsupported file type {file.suffix!r}; supported: {supported_text()}")
    if dataset is not None and fmt not in ("hdf5", "zarr"):
        raise ValueError(f"dataset={dataset!r} only applies to HDF5 files and zarr groups, not to {fmt} ({file})")
    if fmt in ("tiff", "mrc", "hdf5") and not file.is_file():  # a pipe or device would block or never end
        raise VolumeReadError(f"{file} is not a regular file; save the volume to a file first")

    raw = _READERS[fmt](file, dataset, lazy)
    data = as_zyx(raw.data, what=str(file))
    check_size(file, data.shape, data.dtype)
    decode_now(data, file)
    saved = raw.saved if isinstance(raw.saved, dict) else {}
    params = saved.get("parameters") if isinstance(saved.get("parameters"), dict) else {}
    voxel_size = valid_voxel(saved["voxel_size_nm"]) if saved.get("voxel_size_nm") else None
    data = _restore_dtype(data, saved, params, lazy)
    metadata: dict[str, Any] = {
        **params,
        "format": fmt,
        "source_path": str(file),
        "dtype": str(data.dtype),
        "lazy": type(data) is not np.ndarray,
        **raw.extra,
    }
    return Volume(data=data, voxel_size=voxel_size or raw.voxel_size, name=_stem(file), metadata=metadata)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The parameters saved by :func:`write_volume` in a TIFF or zarr we wrote; {} for foreign files or formats.

    Raises FileNotFoundError for a missing path and VolumeReadError for a TIFF that cannot be opened.
    """
    file, _ = split_h5_path(path)
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    with read_errors(file), quiet_tifffile():
        fmt = detect_format(file)
        saved: dict[str, Any] | None = None
        if fmt == "tiff" and file.is_file():
            with open_tiff(file) as tif:
                saved = saved_from_tiff(tif)
        elif fmt == "zarr":
            saved = saved_from_zarr(file)
        params = (saved or {}).get("parameters")
        return dict(params) if isinstance(params, dict) else {}


def _stem(file: Path) -> str:
    name = file.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    if file.is_dir() and file.suffix.lower() not in ZARR_SUFFIXES:
        return name  # a folder of slices keeps its whole name ("run.v2")
    return file.stem if file.suffix else name


def _restore_dtype(data: Any, saved: dict[str, Any], params: dict[str, Any], lazy: bool) -> Any:
    """Give back the dtype we saved: masks (kind='mask' or dtype 'bool') as bool, others as recorded."""
    target: np.dtype | None = None
    if params.get("kind") == "mask" or saved.get("dtype") == "bool":
        target = np.dtype(bool)
    elif isinstance(saved.get("dtype"), str):
        try:
            target = np.dtype(saved["dtype"])
        except TypeError:
            target = None
    if target is None or target == data.dtype:
        return data
    if lazy:
        import dask.array as da

        lazy_data = data if isinstance(data, da.Array) else da.from_array(data, chunks=(1, *data.shape[1:]))
        return lazy_data != 0 if target.kind == "b" else lazy_data.astype(target)
    loaded = np.asarray(data)
    return loaded != 0 if target.kind == "b" else loaded.astype(target)
