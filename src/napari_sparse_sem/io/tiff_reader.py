"""TIFF stacks and folders of 2D slices (TIFF/PNG): header checks, voxel size from ImageJ or OME metadata, and
lazy reading (``numpy.memmap`` for uncompressed contiguous pixels, else a dask array over tifffile's zarr store;
a folder is a dask stack with one delayed read per file).
"""

from __future__ import annotations

import logging
import struct
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .formats import TIFF_SUFFIXES, RawRead, saved_from_json_text, slice_files, unit_to_nm, valid_voxel
from .guards import (
    DEFAULT_MAX_COMPRESSION_RATIO,
    MAX_COMPRESSION_RATIO,
    VolumeReadError,
    check_size,
    lazy_array,
    short_error,
)


@contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log warnings while we open a file; broken files are reported by our own checks."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def open_tiff(file: Path) -> Iterator[tifffile.TiffFile]:
    """Open a TIFF, turning tifffile's errors into a VolumeReadError that names the file."""
    try:
        with quiet_tifffile():
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


def saved_from_tiff(tif: tifffile.TiffFile) -> dict[str, Any] | None:
    """Our saved block from a TIFF we wrote (JSON in the ImageJ 'Info' text); None for other TIFFs."""
    ij = tif.imagej_metadata or {}
    return saved_from_json_text(ij.get("Info"))


def _check_tiff_complete(tif: tifffile.TiffFile, file: Path) -> None:
    """Raise VolumeReadError when the file ends before its pages or pixel data do (truncated or corrupt)."""
    size = file.stat().st_size
    broken = f"{file} is corrupt or truncated: "
    with quiet_tifffile():
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
    return valid_voxel((sizes.get("Z", x), sizes.get("Y", x), x))


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
    return valid_voxel((z, y, x))


def _tiff_voxel_size(tif: tifffile.TiffFile, nz: int) -> tuple[float, float, float] | None:
    if tif.is_ome:
        return _ome_voxel_size(tif)
    if tif.is_imagej:
        return _imagej_voxel_size(tif, nz)
    return None


def read_tiff(file: Path, dataset: str | None, lazy: bool) -> RawRead:
    """The first series of a TIFF (multi-page, ImageJ hyperstack, OME-TIFF) with its voxel size and saved block."""
    with open_tiff(file) as tif:
        _check_tiff_complete(tif, file)
        if not tif.series:
            raise VolumeReadError(f"{file} holds no image data")
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        _check_tiff_size(tif, series, file)
        saved = saved_from_tiff(tif)
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
    return RawRead(_tiff_reduce_axes(data, axes, file, photometric), voxel, saved)


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
        with open_tiff(file) as tif:
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
            with quiet_tifffile(), open_tiff(file) as tif:
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


def read_folder(folder: Path, dataset: str | None, lazy: bool) -> RawRead:
    """A folder of 2D slices (natural order) as a stack; all slices must share shape and dtype."""
    files = slice_files(folder)
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
    return RawRead(data, voxel, None, extra)


def _folder_voxel_size(files: list[Path], nz: int) -> tuple[tuple[float, float, float] | None, str | None]:
    """Voxel size from the first TIFF slice; without a z step there, z is assumed equal to x (and noted)."""
    first_tiff = next((f for f in files if f.suffix.lower() in TIFF_SUFFIXES), None)
    if first_tiff is None:
        return None, None
    with open_tiff(first_tiff) as tif:
        voxel = _tiff_voxel_size(tif, 1)
        has_spacing = "spacing" in (tif.imagej_metadata or {}) or (tif.is_ome and "PhysicalSizeZ" in tif.ome_metadata)
    if voxel is None or has_spacing or nz == 1:
        return voxel, None
    return voxel, f"z step unknown (not in {first_tiff.name}); assumed equal to the x pixel size"
