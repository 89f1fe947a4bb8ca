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

import json
import logging
import math
import re
import struct
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .guards import (
    DEFAULT_MAX_COMPRESSION_RATIO,
    MAX_CHUNKS_PER_AXIS,
    MAX_COMPRESSION_RATIO,
    MAX_COUNTED_CHUNKS,
    MAX_SLICE_BYTES,
    VolumeReadError,
    check_size,
    decode_now,
    lazy_array,
    read_errors,
    short_error,
    size_text,
)
from .volume import Volume, as_zyx

METADATA_KEY = "napari_sparse_sem"
"""Key of our saved block in zarr attributes (and the JSON object inside a TIFF's ImageJ 'Info')."""

INFO_MARKER = "napari-sparse-sem metadata (JSON):"
"""First line of the ImageJ 'Info' text we write; the JSON block follows it."""

READER_KEYS = (
    "format",
    "source_path",
    "dtype",
    "lazy",
    "dataset",
    "n_files",
    "n_levels",
    "ome_scale",
    "voxel_size_nm",
    "voxel_size_note",
    "missing_chunks",
)
"""Metadata keys that describe a file read (set by readers/hooks), not saved parameters; writers drop them."""

TIFF_SUFFIXES = (".tif", ".tiff")
SLICE_SUFFIXES = (".tif", ".tiff", ".png")
ZARR_SUFFIXES = (".zarr",)
MRC_SUFFIXES = (".mrc", ".map", ".rec", ".st")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
ZARR_MARKERS = (".zarray", ".zgroup", ".zattrs", "zarr.json")

SUPPORTED_FORMATS: dict[str, str] = {
    "tiff": "TIFF stack (.tif, .tiff; multi-page, ImageJ hyperstack, OME-TIFF)",
    "folder": "folder of 2D slices (.tif, .tiff, .png; natural sort order)",
    "zarr": "zarr / OME-Zarr (.zarr or a folder with zarr metadata; zarr v2 and v3)",
    "mrc": "MRC (.mrc, .map, .rec, .st)",
    "hdf5": "HDF5 (.h5, .hdf5, .hdf; pick a dataset with dataset= or 'file.h5:/group/ds')",
}

_UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,  # micro sign U+00B5
    "μm": 1e3,  # greek mu U+03BC
    "\\u00b5m": 1e3,  # ImageJ writes the micro sign escaped
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometers": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "å": 0.1,
    "angstrom": 0.1,
    "angstroms": 0.1,
    "ångström": 0.1,
    "pm": 1e-3,
    "picometer": 1e-3,
}


def unit_to_nm(unit: Any) -> float | None:
    """Nanometres per ``unit`` (e.g. 'micron' -> 1000); None for unknown units or 'pixel'."""
    if not isinstance(unit, str):
        return None
    return _UNIT_NM.get(unit.strip().lower())


def _clean(value: float) -> float:
    """Drop float noise from unit conversions (0.01 µm * 1000 -> 10.0)."""
    return float(f"{float(value):.10g}")


def _voxel(values: Any) -> tuple[float, float, float] | None:
    """A validated (z, y, x) voxel size: three positive finite numbers, else None."""
    try:
        out = tuple(_clean(v) for v in values)
    except (TypeError, ValueError):
        return None
    if len(out) != 3 or not all(np.isfinite(v) and v > 0 for v in out):
        return None
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------- dispatch


_H5_INNER = re.compile(r"^(?P<file>.+\.(?:h5|hdf5|hdf|zarr)):(?P<inner>[^\\:]+)$", re.IGNORECASE)


def split_h5_path(path: str | Path) -> tuple[Path, str | None]:
    """Split 'file.h5:/group/ds' (or 'store.zarr:array') into the file and the inner name; else (path, None)."""
    text = str(path)
    match = _H5_INNER.match(text)
    if match and not Path(text).exists():
        return Path(match["file"]).expanduser(), match["inner"]
    return Path(text).expanduser(), None


def _is_zarr_dir(path: Path) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in ZARR_MARKERS)


def _slice_files(folder: Path) -> list[Path]:
    """2D slice files of ``folder`` in natural order (slice_9 before slice_10); hidden files are ignored."""
    files = [
        f for f in folder.iterdir() if f.suffix.lower() in SLICE_SUFFIXES and not f.name.startswith(".") and f.is_file()
    ]
    return sorted(files, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    parts = re.split(r"(\d+)", path.name.lower())
    return [int(p) if p.isdigit() else p for p in parts]


def detect_format(path: str | Path) -> str | None:
    """Which reader handles ``path`` ('tiff', 'folder', 'zarr', 'mrc', 'hdf5'), or None when none does.

    Decided from the name and, for folders, their content; nothing is read. A '.zarr' path that does not exist still
    counts as zarr, so reading it gives a clear FileNotFoundError.
    """
    file, _ = split_h5_path(path)
    suffix = file.suffix.lower()
    if suffix in ZARR_SUFFIXES or _is_zarr_dir(file):
        return "zarr"
    if file.is_dir():
        try:
            return "folder" if _slice_files(file) else None
        except OSError:
            return None
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    return None


def _supported_text() -> str:
    return "; ".join(SUPPORTED_FORMATS.values())


@dataclass
class _Raw:
    """What a format reader found: 2D/3D data, voxel size, our saved block (if any) and extra metadata."""

    data: Any
    voxel_size: tuple[float, float, float] | None = None
    saved: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
    with read_errors(file), _quiet_tifffile():
        return _read_volume(file, dataset, lazy)


def _read_volume(file: Path, dataset: str | None, lazy: bool) -> Volume:
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    fmt = detect_format(file)
    if fmt is None:
        if file.is_dir():
            raise ValueError(
                f"{file} is a folder without .tif/.tiff/.png slices or zarr metadata; supported: {_supported_text()}"
            )
        raise ValueError(f"{file} has an unsupported file type {file.suffix!r}; supported: {_supported_text()}")
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
    voxel_size = _voxel(saved["voxel_size_nm"]) if saved.get("voxel_size_nm") else None
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
    with read_errors(file), _quiet_tifffile():
        fmt = detect_format(file)
        saved: dict[str, Any] | None = None
        if fmt == "tiff" and file.is_file():
            with _open_tiff(file) as tif:
                saved = _saved_from_tiff(tif)
        elif fmt == "zarr":
            saved = _saved_from_zarr(file)
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


def _saved_from_json_text(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or INFO_MARKER not in text:
        return None
    try:
        block = json.loads(text.split(INFO_MARKER, 1)[1])
    except json.JSONDecodeError:
        return None
    saved = block.get(METADATA_KEY) if isinstance(block, dict) else None
    return saved if isinstance(saved, dict) else None


# ---------------------------------------------------------------------------------------------------------- TIFF


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log warnings while we open a file; broken files are reported by our own checks."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _open_tiff(file: Path) -> Iterator[tifffile.TiffFile]:
    """Open a TIFF, turning tifffile's errors into a VolumeReadError that names the file."""
    try:
        with _quiet_tifffile():
            tif = tifffile.TiffFile(file)
    except FileNotFoundError:
        raise
    except Exception as err:  # tifffile raises many types for broken headers
        raise VolumeReadError(
            f"{file} is not a readable TIFF file; it may be corrupt or truncated ({short_error(err)})"
        ) from err
    try:
        yield tif
    finally:
        tif.close()


def _saved_from_tiff(tif: tifffile.TiffFile) -> dict[str, Any] | None:
    ij = tif.imagej_metadata or {}
    return _saved_from_json_text(ij.get("Info"))


def _check_tiff_complete(tif: tifffile.TiffFile, file: Path) -> None:
    """Raise VolumeReadError when the file ends before its pages or pixel data do (truncated or corrupt)."""
    size = file.stat().st_size
    broken = f"{file} is corrupt or truncated: "
    with _quiet_tifffile():
        try:
            pages = tif.pages
            count = len(pages)
            last = pages[count - 1]
        except Exception as err:  # tifffile raises many types for broken IFD chains
            raise VolumeReadError(broken + f"cannot read its pages ({short_error(err)})") from err
        try:
            series = tif.series[0] if tif.series else None
        except Exception as err:
            raise VolumeReadError(broken + f"cannot make sense of its pages ({short_error(err)})") from err
    if series is not None and series.dataoffset is not None and series.dataoffset + series.nbytes > size:
        needed = series.dataoffset + series.nbytes
        raise VolumeReadError(broken + f"the pixel data needs {needed} bytes, the file has {size}")
    for which, page in (("first", pages.first), ("last", last)):
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
        if ends and max(ends) > size:
            raise VolumeReadError(broken + f"its {which} page's data ends at byte {max(ends)}, the file has {size}")
    info = tif.tiff
    with open(file, "rb") as fh:
        fh.seek(last.offset)
        (ntags,) = struct.unpack(info.tagnoformat, fh.read(info.tagnosize))
        fh.seek(last.offset + info.tagnosize + ntags * info.tagsize)
        raw_next = fh.read(info.offsetsize)
    if len(raw_next) == info.offsetsize:
        (next_ifd,) = struct.unpack(info.offsetformat, raw_next)
        if next_ifd != 0 and next_ifd >= size:
            raise VolumeReadError(
                broken + f"page {count} points to a next page at byte {next_ifd}, beyond its {size} bytes"
            )
    else:
        raise VolumeReadError(broken + "its last page directory is cut off")
    ij = tif.imagej_metadata or {}
    if series is not None and isinstance(ij.get("images"), int):
        planes = _planes(series.shape, series.axes)
        if planes < ij["images"]:
            raise VolumeReadError(
                broken + f"ImageJ metadata announces {ij['images']} images but only {planes} were found"
            )


def _planes(shape: tuple[int, ...], axes: str) -> int:
    """Number of 2D planes in a tifffile series (product of the non-Y/X/sample axes)."""
    return int(np.prod([n for n, a in zip(shape, axes, strict=True) if a not in "YXS"], dtype=np.int64))


def _tiff_reduce_axes(data: Any, axes: str, file: Path, photometric: int) -> Any:
    """Drop singleton non-spatial axes; refuse RGB(A)/multi-sample pixels and more than one remaining non-YX axis."""
    shape = tuple(data.shape)
    if "S" in axes and shape[axes.index("S")] > 1:
        if photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE):
            raise ValueError(
                f"{file} has {shape[axes.index('S')]} samples per pixel (axes {axes}, shape {shape}); only one "
                "grayscale channel is supported — save a single channel first"
            )
        raise ValueError(
            f"{file} is an RGB/RGBA (color) image (axes {axes}, shape {shape}); convert it to grayscale first "
            "(e.g. Fiji: Image > Type > 8-bit, or skimage.color.rgb2gray) and save it again"
        )
    keep = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if a in "YX" or n > 1]
    if len(keep) < len(axes):
        data = data[tuple(slice(None) if i in keep else 0 for i in range(len(axes)))]
        axes = "".join(axes[i] for i in keep)
    if len(axes) > 3:
        raise ValueError(
            f"{file} has {len(axes)} non-trivial dimensions (axes {axes}, shape {tuple(data.shape)}); only 2D images "
            "and 3D (z, y, x) stacks are supported — select one channel/time point first (e.g. Fiji: Duplicate...)"
        )
    return data


def _ome_voxel_size(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    try:
        root = ET.fromstring(tif.ome_metadata or "")
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        factor = unit_to_nm(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is not None and factor is not None:
            sizes[axis] = float(value) * factor
    if "X" not in sizes:
        return None
    x = sizes["X"]
    return _voxel((sizes.get("Z", x), sizes.get("Y", x), x))


def _imagej_voxel_size(tif: tifffile.TiffFile, nz: int) -> tuple[float, float, float] | None:
    """Voxel size from ImageJ's 'unit', 'spacing' (z step) and X/YResolution (pixels per unit).

    Follows ImageJ: a stack without 'spacing' has a z step of 1 unit; a single image gets z = x.
    """
    ij = tif.imagej_metadata or {}
    factor = unit_to_nm(ij.get("unit"))
    if factor is None:
        return None
    tags = tif.pages.first.tags
    sizes = []
    for name in ("YResolution", "XResolution"):
        tag = tags.get(name)
        if tag is None:
            return None
        num, den = tag.value
        if not num or not den:
            return None
        sizes.append(factor * den / num)
    y, x = sizes
    z = factor * float(ij["spacing"]) if "spacing" in ij else (factor if nz > 1 else x)
    return _voxel((z, y, x))


def _tiff_voxel_size(tif: tifffile.TiffFile, nz: int) -> tuple[float, float, float] | None:
    if tif.is_ome:
        return _ome_voxel_size(tif)
    if tif.is_imagej:
        return _imagej_voxel_size(tif, nz)
    return None


def _read_tiff(file: Path, dataset: str | None, lazy: bool) -> _Raw:
    with _open_tiff(file) as tif:
        _check_tiff_complete(tif, file)
        if not tif.series:
            raise VolumeReadError(f"{file} holds no image data")
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        _check_tiff_size(tif, series, file)
        saved = _saved_from_tiff(tif)
        nz = _planes(shape, axes)
        voxel = _tiff_voxel_size(tif, nz)
        photometric = tif.pages.first.photometric
        if _planar_stack(tif, series, file):
            axes, photometric = "ZYX", tifffile.PHOTOMETRIC.MINISBLACK
        memmappable = series.dataoffset is not None and tif.pages.first.compression == 1
        try:
            if not lazy:
                data = series.asarray()
            elif memmappable:
                data = tifffile.memmap(file, series=0, mode="r")
            else:
                data = None
        except Exception as err:
            raise VolumeReadError(
                f"{file} is corrupt or truncated: reading its pixels failed ({short_error(err)})"
            ) from err
    if data is None:
        data = _tiff_dask(file)
    if tuple(data.shape) != tuple(shape):
        data = data.reshape(shape)
    return _Raw(_tiff_reduce_axes(data, axes, file, photometric), voxel, saved)


def _tiff_ratio(page: Any, dtype: np.dtype) -> float:
    """How many decoded bytes one stored byte of ``page`` can give (compression bound times bit-depth expansion)."""
    try:
        ratio = float(MAX_COMPRESSION_RATIO.get(int(page.compression), DEFAULT_MAX_COMPRESSION_RATIO))
        bits = int(page.bitspersample)
    except (TypeError, ValueError):
        return float(DEFAULT_MAX_COMPRESSION_RATIO)
    if 0 < bits < 8 * dtype.itemsize:  # 1-bit masks decode to one byte per pixel, 12-bit data to uint16
        ratio *= 8 * dtype.itemsize / bits
    return ratio


def _check_tiff_size(tif: tifffile.TiffFile, series: Any, file: Path) -> None:
    """Refuse a TIFF whose header claims more pixels than is plausible or than the file can hold."""
    page = tif.pages.first
    if series.dtype is None:
        raise VolumeReadError(
            f"{file}: its pixel type (BitsPerSample {page.bitspersample}, SampleFormat {page.sampleformat}) cannot be "
            "decoded; the file is corrupt or uses a pixel type we do not support"
        )
    dtype = np.dtype(series.dtype)
    check_size(
        file,
        series.shape,
        dtype,
        plane_axes=3 if series.axes.endswith("S") else 2,
        stored=file.stat().st_size,
        ratio=_tiff_ratio(page, dtype),
        what="its TIFF header",
    )


def _planar_stack(tif: tifffile.TiffFile, series: Any, file: Path) -> bool:
    """True (with a warning) for an (n, y, x) array, n = 3 or 4, that tifffile stored as planar RGB(A).

    ``tifffile.imwrite(path, stack)`` stores a 3- or 4-slice grayscale stack that way unless it is told otherwise,
    and the file cannot tell it from a colour image saved with ``photometric='rgb'``. We read it as slices, which is
    what a FIB-SEM stack is far more likely to be; chunky RGB (y, x, 3) and RGB from other writers are still refused.
    """
    page = tif.pages.first
    if series.axes != "SYX" or series.shape[0] not in (3, 4):
        return False
    if page.photometric != tifffile.PHOTOMETRIC.RGB or page.planarconfig != tifffile.PLANARCONFIG.SEPARATE:
        return False
    shaped = tif.shaped_metadata if tif.is_shaped else None
    if not shaped or list(shaped[0].get("shape", [])) != list(series.shape):
        return False
    n = series.shape[0]
    warnings.warn(
        f"{file} is stored as planar RGB{'A' if n == 4 else ''}, which is how tifffile saves any ({n}, y, x) array "
        f"unless told otherwise; it is read as {n} grayscale slices. If it is a colour image, convert it to "
        "grayscale first (e.g. Fiji: Image > Type > 8-bit).",
        UserWarning,
        stacklevel=5,
    )
    return True


def _tiff_dask(file: Path) -> Any:
    """Lazy dask view of a compressed or non-contiguous TIFF through tifffile's zarr store (keeps the file open)."""
    import zarr

    store = tifffile.imread(file, aszarr=True, series=0, level=0)
    array = zarr.open(store, mode="r")
    if isinstance(array, zarr.Group):  # multi-resolution TIFF: level 0 only
        array = array["0"]
    return lazy_array(array, file, array.chunks)


# ------------------------------------------------------------------------------------------------ slice folders


def _slice_props(file: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, number of planes) of one slice file, read from its header only (and checked for plausibility)."""
    if file.suffix.lower() in TIFF_SUFFIXES:
        with _open_tiff(file) as tif:
            if not tif.series:
                raise VolumeReadError(f"{file} holds no image data")
            series = tif.series[0]
            _check_tiff_size(tif, series, file)
            planes = _planes(series.shape, series.axes)
            shape = tuple(n for n, a in zip(series.shape, series.axes, strict=True) if a in "YXS")
            return shape, np.dtype(series.dtype), planes
    import imageio.v3 as iio

    try:
        props = iio.improps(file)
    except Exception as err:  # imageio raises plugin-specific errors
        raise VolumeReadError(
            f"{file} is not a readable image; it may be corrupt or truncated ({short_error(err)})"
        ) from err
    shape, dtype = tuple(int(n) for n in props.shape), np.dtype(props.dtype)
    # PNG is deflate; 1-bit pixels expand 8 times on decoding
    check_size(
        file, shape, dtype, plane_axes=len(shape), stored=file.stat().st_size, ratio=8 * MAX_COMPRESSION_RATIO[8]
    )
    return shape, dtype, 1


def _read_slice(file: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Decode one slice file; VolumeReadError when it cannot be decoded or does not have the expected shape/dtype."""
    try:
        if file.suffix.lower() in TIFF_SUFFIXES:
            with _quiet_tifffile(), _open_tiff(file) as tif:
                _check_tiff_complete(tif, file)
                plane = tif.series[0].asarray().reshape(tif.series[0].shape[-2:])
        else:
            import imageio.v3 as iio

            plane = np.asarray(iio.imread(file))
    except VolumeReadError:
        raise
    except Exception as err:  # tifffile, imageio and codecs raise many types
        raise VolumeReadError(f"{file} could not be read; it may be corrupt or truncated ({short_error(err)})") from err
    if plane.shape != shape or plane.dtype != dtype:
        raise VolumeReadError(
            f"{file} decodes to shape {plane.shape} {plane.dtype}, but its header said {shape} {dtype}; "
            "the file is probably corrupt"
        )
    return plane


def _read_folder(folder: Path, dataset: str | None, lazy: bool) -> _Raw:
    files = _slice_files(folder)
    shape, dtype, planes = _slice_props(files[0])
    for file in files:
        this_shape, this_dtype, this_planes = (shape, dtype, planes) if file == files[0] else _slice_props(file)
        if this_planes != 1:
            raise ValueError(
                f"{file} holds {this_planes} images; a folder of slices needs one 2D image per file "
                "(open a multi-page file directly instead)"
            )
        if len(this_shape) != 2:
            raise ValueError(
                f"{file} has shape {this_shape} (RGB/RGBA or multi-channel); slices must be 2D grayscale — "
                "convert them to grayscale first"
            )
        if this_shape != shape or this_dtype != dtype:
            raise ValueError(
                f"slice {file.name} has shape {this_shape} and dtype {this_dtype}, but {files[0].name} has "
                f"{shape} {dtype}; all slices in {folder} must share shape and dtype (move the odd file out)"
            )
    voxel, note = _folder_voxel_size(files, len(files))
    extra = {"n_files": len(files)}
    if note:
        extra["voxel_size_note"] = note
    if lazy:
        import dask
        import dask.array as da

        read = dask.delayed(_read_slice, pure=True)
        data = da.stack([da.from_delayed(read(f, shape, dtype), shape=shape, dtype=dtype) for f in files])
    else:
        check_size(folder, (len(files), *shape), dtype)
        data = np.empty((len(files), *shape), dtype=dtype)
        for z, file in enumerate(files):
            data[z] = _read_slice(file, shape, dtype)
    return _Raw(data, voxel, None, extra)


def _folder_voxel_size(files: list[Path], nz: int) -> tuple[tuple[float, float, float] | None, str | None]:
    """Voxel size from the first TIFF slice; without a z step there, z is assumed equal to x (and noted)."""
    first_tiff = next((f for f in files if f.suffix.lower() in TIFF_SUFFIXES), None)
    if first_tiff is None:
        return None, None
    with _open_tiff(first_tiff) as tif:
        voxel = _tiff_voxel_size(tif, 1)
        has_spacing = "spacing" in (tif.imagej_metadata or {}) or (tif.is_ome and "PhysicalSizeZ" in tif.ome_metadata)
    if voxel is None or has_spacing or nz == 1:
        return voxel, None
    return voxel, f"z step unknown (not in {first_tiff.name}); assumed equal to the x pixel size"


# ---------------------------------------------------------------------------------------------------------- zarr


def _saved_from_zarr(file: Path) -> dict[str, Any] | None:
    import zarr

    try:
        node = zarr.open(str(file), mode="r")
        saved = dict(node.attrs).get(METADATA_KEY)
    except Exception:  # unreadable store or attributes: the reader itself reports that
        return None
    return saved if isinstance(saved, dict) else None


def _ome_multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    multiscales = attrs.get("multiscales")
    if multiscales is None and isinstance(attrs.get("ome"), dict):
        multiscales = attrs["ome"].get("multiscales")  # OME-Zarr 0.5 (zarr v3)
    return multiscales if isinstance(multiscales, list) and multiscales else None


def _ome_axes(multiscale: dict[str, Any], ndim: int) -> list[dict[str, Any]]:
    axes = multiscale.get("axes")
    if not axes:  # OME-Zarr 0.1/0.2 had no axes: (t, c, z, y, x) trimmed from the left
        axes = ["t", "c", "z", "y", "x"][-ndim:]
    out = []
    for axis in axes:
        if isinstance(axis, str):  # 0.3: plain names
            axis = {"name": axis}
        name = str(axis.get("name", "")).lower()
        kind = axis.get("type") or {"t": "time", "c": "channel"}.get(name, "space" if name in "zyx" else None)
        out.append({"name": name, "type": kind, "unit": axis.get("unit")})
    return out


def _ome_scale(multiscale: dict[str, Any], dataset: dict[str, Any], ndim: int) -> list[float] | None:
    scale = np.ones(ndim)
    found = False
    for transforms in (dataset.get("coordinateTransformations"), multiscale.get("coordinateTransformations")):
        for transform in transforms or []:
            if transform.get("type") == "scale" and len(transform.get("scale", [])) == ndim:
                scale *= np.asarray(transform["scale"], dtype=float)
                found = True
    return scale.tolist() if found else None


def _read_ome(group: Any, multiscales: list[dict[str, Any]], file: Path, lazy: bool) -> _Raw:
    import zarr

    multiscale = multiscales[0]
    level0 = multiscale["datasets"][0]
    array = group[level0["path"]]
    if not isinstance(array, zarr.Array):
        raise VolumeReadError(f"{file}: its OME metadata names {level0['path']!r} as level 0, which is not an array")
    axes = _ome_axes(multiscale, array.ndim)
    if len(axes) != array.ndim:
        raise VolumeReadError(f"{file}: OME metadata lists {len(axes)} axes but level 0 has {array.ndim} dimensions")
    scale = _ome_scale(multiscale, level0, array.ndim)
    index: list[Any] = []
    kept: list[int] = []
    for i, (axis, size) in enumerate(zip(axes, array.shape, strict=True)):
        if axis["type"] in ("time", "channel"):
            if size > 1:
                what = "channels" if axis["type"] == "channel" else "time points"
                raise ValueError(
                    f"{file} has {size} {what} along axis {axis['name']!r}; this plugin reads single-channel "
                    "(z, y, x) volumes — save or select one channel/time point first"
                )
            index.append(0)
        else:
            index.append(slice(None))
            kept.append(i)
    if len(kept) > 3:
        names = "".join(axes[i]["name"] for i in kept)
        raise ValueError(
            f"{file} has {len(kept)} spatial/unknown axes ({names}); only 2D and 3D (z, y, x) images are supported"
        )
    data = _zarr_data(array, lazy, file)[tuple(index)]
    voxel = None
    factors = [unit_to_nm(axes[i]["unit"]) for i in kept]
    if scale is not None and all(f is not None for f in factors):
        sizes = [scale[i] * f for i, f in zip(kept, factors, strict=True)]  # type: ignore[operator]
        voxel = _voxel(sizes if len(sizes) == 3 else [sizes[-1], *sizes])
    extra = {"dataset": str(level0["path"]), "n_levels": len(multiscale["datasets"])}
    extra.update(_missing_chunks(array, file))
    if voxel is None and scale is not None:
        extra["ome_scale"] = [scale[i] for i in kept]
    return _Raw(data, voxel, None, extra)


def _zarr_data(array: Any, lazy: bool, file: Path) -> Any:
    """The array's data (a dask array when lazy), after checking its shape and chunks are plausible."""
    _check_zarr(array, file)
    if lazy:
        return lazy_array(array, file, array.chunks)
    return array[...]


def _check_zarr(array: Any, file: Path) -> None:
    """Refuse zarr metadata that no real volume has: huge shapes, empty or huge chunks, absurd chunk counts."""
    shape, chunks = tuple(int(n) for n in array.shape), tuple(int(n) for n in array.chunks)
    if len(chunks) != len(shape) or any(c <= 0 for c in chunks):
        raise VolumeReadError(
            f"{file}: its zarr metadata gives chunk shape {chunks} for shape {shape}; the metadata is corrupt"
        )
    check_size(file, shape, array.dtype, what="its zarr metadata")
    chunk_bytes = math.prod(chunks) * np.dtype(array.dtype).itemsize
    if chunk_bytes > MAX_SLICE_BYTES:
        raise VolumeReadError(
            f"{file}: its zarr metadata gives chunks of {chunks} ({size_text(chunk_bytes)} each), more than the "
            f"{size_text(MAX_SLICE_BYTES)} limit; the metadata is probably corrupt"
        )
    counts = [-(-n // c) for n, c in zip(shape, chunks, strict=True)]
    if max(counts, default=0) > MAX_CHUNKS_PER_AXIS:
        raise VolumeReadError(
            f"{file}: shape {shape} in chunks of {chunks} makes {max(counts)} chunks along one axis, more than the "
            f"{MAX_CHUNKS_PER_AXIS} limit; the metadata is probably corrupt"
        )


def _missing_chunks(array: Any, file: Path) -> dict[str, int]:
    """{'missing_chunks': n} for an array with at most MAX_COUNTED_CHUNKS chunks (warning when n > 0), else {}.

    zarr reads a chunk that is not stored as the fill value: that is normal for chunks that only ever held the fill
    value (zarr 3 does not write them unless asked; our writers ask), and silent data loss for a deleted one. The two
    look the same, so we warn.
    """
    try:
        total = int(array.nchunks)
        if total > MAX_COUNTED_CHUNKS:
            return {}
        missing = total - int(array.nchunks_initialized)
    except Exception:  # a store that cannot be listed: nothing to report
        return {}
    if missing > 0:
        fill = array.fill_value.item() if hasattr(array.fill_value, "item") else array.fill_value
        warnings.warn(
            f"{file}: {missing} of {total} chunks are missing; those regions read as the fill value {fill} (some "
            "tools skip chunks that hold only the fill value, ours never do: a deleted or lost chunk looks the same)",
            UserWarning,
            stacklevel=5,
        )
    return {"missing_chunks": missing}


def _read_zarr(file: Path, dataset: str | None, lazy: bool) -> _Raw:
    import zarr

    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    try:
        node = zarr.open(str(file), mode="r")
    except FileNotFoundError as err:  # zarr's GroupNotFoundError: the path exists but holds no zarr metadata
        raise VolumeReadError(
            f"{file} is not a zarr store: it has no zarr metadata ({', '.join(ZARR_MARKERS)})"
        ) from err
    except Exception as err:  # zarr raises several types for unreadable stores
        raise VolumeReadError(f"{file} is not a readable zarr store; it may be corrupt ({short_error(err)})") from err
    saved = _saved_from_zarr(file)
    if isinstance(node, zarr.Array):
        if dataset is not None:
            raise ValueError(f"{file} is a single zarr array; dataset={dataset!r} does not apply")
        return _Raw(_zarr_data(node, lazy, file), None, saved, _missing_chunks(node, file))
    attrs = dict(node.attrs)
    multiscales = _ome_multiscales(attrs)
    if dataset is None and multiscales is not None:
        raw = _read_ome(node, multiscales, file, lazy)
        raw.saved = saved
        return raw
    arrays = sorted(path for path, member in node.members(max_depth=None) if isinstance(member, zarr.Array))
    if dataset is not None:
        key = dataset.strip("/")
        if key not in arrays:
            raise ValueError(f"{file} has no array {dataset!r}; arrays: {', '.join(arrays) or 'none'}")
        name = key
    elif len(arrays) == 1:
        name = arrays[0]
    elif not arrays:
        raise ValueError(f"{file} is a zarr group without arrays")
    else:
        raise ValueError(
            f"{file} holds several arrays ({', '.join(arrays)}); choose one with dataset='<name>' "
            f"(e.g. dataset={arrays[0]!r})"
        )
    array = node[name]
    if saved is None:
        saved = dict(array.attrs).get(METADATA_KEY) if isinstance(dict(array.attrs).get(METADATA_KEY), dict) else None
    return _Raw(_zarr_data(array, lazy, file), None, saved, {"dataset": name, **_missing_chunks(array, file)})


# ----------------------------------------------------------------------------------------------------------- MRC


def _read_mrc(file: Path, dataset: str | None, lazy: bool) -> _Raw:
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
    voxel = _voxel((float(angstrom.z) / 10, float(angstrom.y) / 10, float(angstrom.x) / 10))
    if lazy:
        data = np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)
    else:
        data = np.fromfile(file, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
    return _Raw(data, voxel)


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
            return _voxel(values)
    return None


def _read_hdf5(file: Path, dataset: str | None, lazy: bool) -> _Raw:
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
    return _Raw(data, voxel, None, {"dataset": key})


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


_READERS = {"tiff": _read_tiff, "folder": _read_folder, "zarr": _read_zarr, "mrc": _read_mrc, "hdf5": _read_hdf5}
