"""zarr stores (v2 and v3), groups and OME-Zarr multiscale images (level 0, and all levels for napari through
:func:`ome_levels`): plausibility checks on the metadata, a lazy dask array over the zarr array, and a count of chunks
that are not stored.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .formats import METADATA_KEY, ZARR_MARKERS, RawRead, unit_to_nm, valid_voxel
from .guards import (
    MAX_CHUNKS_PER_AXIS,
    MAX_COUNTED_CHUNKS,
    MAX_SLICE_BYTES,
    VolumeReadError,
    check_size,
    lazy_array,
    short_error,
    size_text,
)


def saved_from_zarr(file: Path) -> dict[str, Any] | None:
    """Our saved block from the root attributes of a zarr store we wrote; None when absent or unreadable."""
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


def _ome_view(axes: list[dict[str, Any]], shape: tuple[int, ...], file: Path) -> tuple[tuple[Any, ...], list[int]]:
    """The index that drops singleton time/channel axes, and the kept (spatial) axes; more is a ValueError."""
    index: list[Any] = []
    kept: list[int] = []
    for i, (axis, size) in enumerate(zip(axes, shape, strict=True)):
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
    return tuple(index), kept


def _read_ome(group: Any, multiscales: list[dict[str, Any]], file: Path, lazy: bool) -> RawRead:
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
    index, kept = _ome_view(axes, array.shape, file)
    data = _zarr_data(array, lazy, file)[index]
    voxel = None
    factors = [unit_to_nm(axes[i]["unit"]) for i in kept]
    if scale is not None and all(f is not None for f in factors):
        sizes = [scale[i] * f for i, f in zip(kept, factors, strict=True)]  # type: ignore[operator]
        voxel = valid_voxel(sizes if len(sizes) == 3 else [sizes[-1], *sizes])
    extra = {"dataset": str(level0["path"]), "n_levels": len(multiscale["datasets"])}
    extra.update(_missing_chunks(array, file))
    if voxel is None and scale is not None:
        extra["ome_scale"] = [scale[i] for i in kept]
    return RawRead(data, voxel, None, extra)


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


def read_zarr(file: Path, dataset: str | None, lazy: bool) -> RawRead:
    """A zarr array, the one array of a group (or ``dataset``), or level 0 of an OME-Zarr image."""
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
    saved = saved_from_zarr(file)
    if isinstance(node, zarr.Array):
        if dataset is not None:
            raise ValueError(f"{file} is a single zarr array; dataset={dataset!r} does not apply")
        return RawRead(_zarr_data(node, lazy, file), None, saved, _missing_chunks(node, file))
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
    return RawRead(_zarr_data(array, lazy, file), None, saved, {"dataset": name, **_missing_chunks(array, file)})


def ome_levels(file: str | Path) -> list[Any]:
    """The levels of the OME-Zarr image at ``file`` as lazy (z, y, x) dask arrays, level 0 first; [] when ``file``
    has no multiscales metadata.

    Only leading levels that make a pyramid count: each has level 0's dtype, halves y and x (rounding either way) and
    keeps or halves z. The first level that does not, or whose array is missing or implausible, ends the list with a
    warning (level 0 alone is what :func:`read_zarr` reads, and its errors are raised).
    """
    import zarr

    file = Path(file)
    group = zarr.open(str(file), mode="r")
    multiscales = None if isinstance(group, zarr.Array) else _ome_multiscales(dict(group.attrs))
    if multiscales is None:
        return []
    multiscale = multiscales[0]
    levels: list[Any] = []
    for k, dataset in enumerate(multiscale.get("datasets") or []):
        try:
            array = group[str(dataset["path"])]
            if not isinstance(array, zarr.Array):
                raise VolumeReadError(f"{dataset['path']!r} is not an array")
            axes = _ome_axes(multiscale, array.ndim)
            if len(axes) != array.ndim:
                raise VolumeReadError(f"{len(axes)} axes for {array.ndim} dimensions")
            index, _ = _ome_view(axes, array.shape, file)
            data = _zarr_data(array, True, file)[index]
            data = data[None] if data.ndim == 2 else data
            if levels and not _halves(levels[-1], data):
                raise VolumeReadError(
                    f"{data.dtype} {tuple(data.shape)} is not half of {levels[-1].dtype} {tuple(levels[-1].shape)}"
                )
        except Exception as err:
            if k == 0:
                raise
            warnings.warn(
                f"{file}: multiscale levels from {k} on are left out ({short_error(err)})", UserWarning, stacklevel=2
            )
            break
        if k > 0:
            _missing_chunks(array, file)
        levels.append(data)
    return levels


def _halves(upper: Any, lower: Any) -> bool:
    """Whether ``lower`` is one 2x step below ``upper``: same dtype, y and x halved, z kept or halved."""
    if lower.dtype != upper.dtype or lower.ndim != 3 or upper.ndim != 3:
        return False
    (z, y, x), (lz, ly, lx) = upper.shape, lower.shape

    def half(n: int) -> set[int]:
        return {max(1, n // 2), -(-n // 2)}

    return lz in {z, *half(z)} and ly in half(y) and lx in half(x) and (lz, ly, lx) != (z, y, x)
