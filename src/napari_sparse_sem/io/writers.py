"""Write volumes, masks and reconstructions to ImageJ TIFF or OME-Zarr, with the parameters that made them.

* ``.tif`` / ``.tiff``: an ImageJ hyperstack, so Fiji shows the voxel size (unit micron, 'spacing' = z step,
  X/YResolution = pixels per micron). Our block ``{"napari_sparse_sem": {"format_version", "voxel_size_nm",
  "dtype", "parameters"}}`` is JSON in ImageJ's 'Info' text (Fiji: Image > Show Info), after the line
  :data:`~napari_sparse_sem.io.readers.INFO_MARKER`. ImageJ holds only uint8, uint16, int16 and float32: bool is
  stored as uint8 0/1, other integers in the smallest of those types that holds their values exactly (else a
  ValueError suggests .zarr), float64/float16 as float32. The original dtype is recorded and ``read_volume``
  restores it.
* ``.zarr``: OME-Zarr 0.4 in zarr v2 format (readable by zarr 2 and 3, napari-ome-zarr and Fiji): a group with one
  array ``"0"`` chunked per slice (tiles of at most 4096 x 4096), multiscales metadata with z, y, x axes in
  nanometer, and our block in the group attributes. bool is stored as uint8 0/1.

Both are written slice by slice (a dask input is computed one slice at a time, so it never loads whole) into a
temporary file next to the target that is moved into place at the end: a failed write leaves an existing target
untouched, and overwriting the very file a lazy volume reads from is safe.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import tifffile

from .. import __version__
from ..provenance import stamp
from .readers import (
    INFO_MARKER,
    METADATA_KEY,
    READER_KEYS,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    _is_zarr_dir,
)
from .volume import as_zyx

FORMAT_VERSION = 1
MAX_ARRAY_ITEMS = 10_000
"""numpy arrays in metadata up to this size are saved as lists; bigger ones are dropped (with a warning)."""

WRITE_FORMATS = {"tiff": "ImageJ TIFF (.tif, .tiff)", "zarr": "OME-Zarr (.zarr)"}
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.float32))
_MAX_TILE = 4096

_DROP = object()


# ------------------------------------------------------------------------------------------------------ metadata


def jsonable(metadata: Mapping[str, Any] | None, *, stacklevel: int = 2) -> dict[str, Any]:
    """A JSON-ready copy of ``metadata``: numpy scalars become numbers, tuples/sets/small arrays lists, paths strings,
    dataclasses and enums their fields/values. Entries that cannot be converted are dropped with a warning
    (``stacklevel`` points it at the caller)."""
    dropped: list[str] = []
    out = _convert(dict(metadata or {}), "", dropped)
    if dropped:
        warnings.warn(
            f"metadata entries that cannot be saved as JSON were left out: {', '.join(dropped)}",
            UserWarning,
            stacklevel=stacklevel,
        )
    return out  # type: ignore[return-value]


def _convert(value: Any, where: str, dropped: list[str]) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.generic) and value.dtype.kind in "biufUS":
        return _convert(value.item(), where, dropped)
    if isinstance(value, enum.Enum):
        return _convert(value.value, where, dropped)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, (str, int, float, bool)):
                dropped.append(f"{where}[{key!r}]" if where else repr(key))
                continue
            name = str(key)
            converted = _convert(item, f"{where}.{name}" if where else name, dropped)
            if converted is not _DROP:
                out[name] = converted
        return out
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufUS":
        if value.size <= MAX_ARRAY_ITEMS:
            return _convert(value.tolist(), where, dropped)
        dropped.append(f"{where} (array of {value.size} values)")
        return _DROP
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        converted_items = (_convert(v, f"{where}[{i}]", dropped) for i, v in enumerate(items))
        return [c for c in converted_items if c is not _DROP]
    dropped.append(f"{where} ({type(value).__name__})")
    return _DROP


# ------------------------------------------------------------------------------------------------------- writing


def write_volume(
    path: str | Path,
    data: Any,
    *,
    voxel_size: Any = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a 2D image or (z, y, x) stack to ``path`` (.tif/.tiff or .zarr) with voxel size and parameters.

    ``voxel_size`` is (z, y, x) in nm ((y, x) is accepted for 2D data). ``metadata`` is saved as JSON (see
    :func:`jsonable`; reader-only keys such as 'format' or 'source_path' are left out) and comes back from
    :func:`~napari_sparse_sem.io.readers.read_metadata`. bool data is saved as uint8 0/1 with kind='mask' and reads
    back as bool. An existing target raises FileExistsError unless ``overwrite=True``; missing parent folders are
    created. Returns the written path.
    """
    target = Path(path).expanduser()
    kind = output_kind(target)
    array = as_zyx(data if hasattr(data, "ndim") and hasattr(data, "dtype") else np.asarray(data), "data to write")
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"cannot save data of dtype {dtype}; convert it to an integer, float or bool array first")
    voxel = checked_voxel_size(voxel_size)
    block = metadata_block(dtype, voxel, metadata, stacklevel=4)
    check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.partial-{uuid.uuid4().hex[:8]}{target.suffix}")
    try:
        if kind == "tiff":
            _write_tiff(tmp, array, voxel, block)
        else:
            _write_zarr(tmp, array, voxel, block, name=target.stem)
        move_into_place(tmp, target)
    finally:
        remove_path(tmp)
    return target


def metadata_block(
    dtype: Any, voxel_size: Any = None, metadata: Mapping[str, Any] | None = None, *, stacklevel: int = 2
) -> dict[str, Any]:
    """The block of parameters we save with a volume (read back by ``read_metadata``); also for zarr group members."""
    dtype = np.dtype(dtype)
    voxel = checked_voxel_size(voxel_size)
    params = jsonable({k: v for k, v in (metadata or {}).items() if k not in READER_KEYS}, stacklevel=stacklevel + 1)
    stamp(params)  # the command that wrote the volume, so `sparse-sem run VOLUME` can write it again
    if dtype.kind == "b":
        params.setdefault("kind", "mask")
    return {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "voxel_size_nm": list(voxel) if voxel else None,
        "dtype": str(dtype),
        "parameters": params,
    }


def output_kind(target: Path) -> str:
    """'tiff' or 'zarr' from the name of a file to write; other names are a ValueError listing what we write."""
    suffix = target.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in ZARR_SUFFIXES:
        return "zarr"
    raise ValueError(
        f"cannot write {target.name!r}: unknown extension {suffix or '(none)'}; use one of: "
        + "; ".join(WRITE_FORMATS.values())
    )


def checked_voxel_size(voxel_size: Any) -> tuple[float, float, float] | None:
    if voxel_size is None:
        return None
    try:
        values = [float(v) for v in voxel_size]
    except (TypeError, ValueError) as err:
        raise ValueError(f"voxel_size must be (z, y, x) in nm, got {voxel_size!r}") from err
    if len(values) == 2:
        values = [values[1], *values]  # 2D: z is irrelevant for one slice, use the x size
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"voxel_size must be three positive numbers (z, y, x) in nm, got {voxel_size!r}")
    return tuple(values)  # type: ignore[return-value]


def check_target(target: Path, overwrite: bool) -> None:
    """An existing ``target`` is replaced only with ``overwrite``, and a folder only when it is a zarr store."""
    if not (target.exists() or target.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{target} already exists; use --overwrite (overwrite=True) to replace it, or choose another name"
        )
    if target.is_dir() and not _is_zarr_dir(target):
        raise ValueError(f"{target} is a folder that is not a zarr store; refusing to replace it — choose another name")


def move_into_place(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp``; an old zarr folder is removed only after the new one is in place."""
    if target.is_dir() and not target.is_symlink():
        backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(backup)
        try:
            tmp.rename(target)
        except BaseException:
            backup.rename(target)
            raise
        shutil.rmtree(backup, ignore_errors=True)
    elif tmp.is_dir() and (target.exists() or target.is_symlink()):
        target.unlink()
        tmp.rename(target)
    else:
        os.replace(tmp, target)


def remove_path(path: Path) -> None:
    """Remove a file, link or folder (zarr store) if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _slices(array: Any, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Slices of ``array`` as numpy in ``dtype``, one at a time (dask computes one slice per step)."""
    for z in range(array.shape[0]):
        plane = np.asarray(array[z])
        yield (plane != 0).astype(dtype) if plane.dtype == bool else plane.astype(dtype, copy=False)


def _min_max(array: Any) -> tuple[float, float]:
    if isinstance(array, np.ndarray):
        return float(array.min()), float(array.max())
    try:
        import dask.array as da

        if isinstance(array, da.Array):
            lo, hi = da.compute(array.min(), array.max())
            return float(lo), float(hi)
    except ImportError:  # pragma: no cover - dask is a dependency
        pass
    lo, hi = np.inf, -np.inf
    for z in range(array.shape[0]):  # other lazy arrays (zarr, h5py): one slice at a time
        plane = np.asarray(array[z])
        lo, hi = min(lo, float(plane.min())), max(hi, float(plane.max()))
    return lo, hi


def _imagej_dtype(array: Any) -> np.dtype:
    """The ImageJ-compatible dtype that holds ``array``'s values (exactly for integers)."""
    dtype = np.dtype(array.dtype)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype in _IMAGEJ_DTYPES:
        return dtype
    if dtype.kind == "f":
        return np.dtype(np.float32)
    if dtype == np.int8:
        return np.dtype(np.int16)
    lo, hi = _min_max(array)
    for candidate in (np.uint8, np.uint16, np.int16):
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            return np.dtype(candidate)
    if -(2**24) <= lo and hi <= 2**24:
        return np.dtype(np.float32)
    raise ValueError(
        f"{dtype} values in [{lo:g}, {hi:g}] do not fit the types an ImageJ TIFF holds exactly (uint8, uint16, "
        "int16, float32); save as .zarr instead"
    )


def _write_tiff(tmp: Path, array: Any, voxel: tuple[float, float, float] | None, block: dict[str, Any]) -> None:
    import json

    dtype = _imagej_dtype(array)
    info = INFO_MARKER + "\n" + json.dumps({METADATA_KEY: block}, indent=1)
    ij_meta: dict[str, Any] = {"axes": "ZYX", "Info": info}
    kwargs: dict[str, Any] = {}
    if voxel is not None:
        z, y, x = voxel
        ij_meta.update(spacing=z / 1000.0, unit="micron")
        kwargs["resolution"] = (1000.0 / x, 1000.0 / y)
    if np.dtype(array.dtype).kind == "b" or block["parameters"].get("kind") == "mask":
        ij_meta.update(min=0.0, max=1.0)  # Fiji shows 0/1 masks black and white
    tifffile.imwrite(
        tmp, _slices(array, dtype), shape=tuple(array.shape), dtype=dtype, imagej=True, metadata=ij_meta, **kwargs
    )


def _write_zarr(
    tmp: Path, array: Any, voxel: tuple[float, float, float] | None, block: dict[str, Any], name: str
) -> None:
    dtype = np.dtype(np.uint8) if np.dtype(array.dtype).kind == "b" else np.dtype(array.dtype)
    _, ny, nx = array.shape
    out = create_ome_zarr(
        tmp, tuple(array.shape), dtype, (1, min(ny, _MAX_TILE), min(nx, _MAX_TILE)), voxel, block, name
    )
    for z, plane in enumerate(_slices(array, dtype)):
        out[z] = plane


def create_ome_zarr(
    path: Path,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    voxel: tuple[float, float, float] | None,
    block: dict[str, Any],
    name: str,
) -> Any:
    """A new OME-Zarr 0.4 store (zarr v2 format) at ``path`` with one empty level-0 array ``"0"`` of ``shape`` in
    ``chunks``, multiscales metadata (z, y, x in nanometer when ``voxel`` is known) and our ``block`` in the group
    attributes; returns the zarr array to fill. Every chunk written is kept on disk, also an all-zero one, so a missing
    chunk means damage or an unfinished run (the reader says which)."""
    import numcodecs
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    out = root.create_array(
        "0",
        shape=tuple(int(s) for s in shape),
        chunks=tuple(int(c) for c in chunks),
        dtype=np.dtype(dtype),
        compressors=numcodecs.Blosc(cname="zstd", clevel=3),
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        config={"write_empty_chunks": True},
    )
    unit = {"unit": "nanometer"} if voxel is not None else {}
    scale = {"type": "scale", "scale": list(voxel or (1.0, 1.0, 1.0))}
    multiscale = {
        "version": "0.4",
        "name": name,
        "axes": [{"name": a, "type": "space", **unit} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [scale]}],
    }
    root.attrs.update({"multiscales": [multiscale], METADATA_KEY: block})
    return out
