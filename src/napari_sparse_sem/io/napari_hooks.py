"""npe2 reader and writer hooks: thin wrappers between files and napari layer-data tuples.

Nothing here imports napari or Qt: the reader returns plain ``(data, kwargs, layer_type)`` tuples and the writers
take napari's plain layer data and attribute dict, so the hooks are testable (and usable) without a viewer. Volumes
with a known voxel size open with ``scale`` = voxel size in nm; masks we saved (kind='mask') open as Labels. An
OME-Zarr store with a pyramid (levels that halve y and x, e.g. from :func:`~napari_sparse_sem.io.pyramid.build_pyramid`)
opens as a multiscale layer of lazy dask arrays, level 0 first; ``read_volume`` itself keeps returning level 0.

Neither hook surprises napari: ``get_reader`` returns None for anything it cannot judge, and ``read_layers`` returns
layer data or raises a one-line ``VolumeReadError`` (corrupt, truncated, implausible file) or ``ValueError``
(unsupported content such as RGB or 4D data), which napari shows as a notification. ``FileNotFoundError`` only
happens when the path disappears between the two calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .readers import VolumeReadError, detect_format, read_volume
from .volume import Volume
from .writers import write_volume
from .zarr_reader import ome_levels

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader for ``path`` when it is a format we handle, else None (never raises, so napari can try others).

    A list is accepted only when it holds a single path.
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        fmt = detect_format(path)
    except Exception:  # a hook must not raise for paths it cannot judge (permissions, odd names ...)
        return None
    return read_layers if fmt is not None else None


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read ``path`` (lazily) into one napari layer-data tuple.

    Raises VolumeReadError or ValueError with a one-line message for files it cannot read (see the module docstring).
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            raise ValueError(f"expected one path, got {len(path)}; open the files one at a time")
        path = path[0]
    try:
        volume = read_volume(path)
        return [volume_layer_data(volume, _pyramid(volume))]
    except (ValueError, FileNotFoundError):  # VolumeReadError is a ValueError
        raise
    except Exception as err:  # read_volume words its errors; this is the last net before napari
        text = " ".join(str(err).split())[:200]
        raise VolumeReadError(f"{path} could not be read ({type(err).__name__}: {text})") from err


def volume_layer_data(volume: Volume, levels: Sequence[Any] | None = None) -> LayerData:
    """A napari layer-data tuple for ``volume``: an image, or labels (uint8 0/1) for a mask we saved.

    ``levels`` (a pyramid, level 0 first, such as :func:`~napari_sparse_sem.io.zarr_reader.ome_levels` gives) makes
    it multiscale: level 0 is ``volume.data`` and the other levels get its dtype (bool for masks), all kept lazy.
    """
    metadata = {**volume.metadata, "voxel_size_nm": volume.voxel_size}
    kwargs: dict[str, Any] = {"name": volume.name, "metadata": metadata}
    if volume.voxel_size is not None:
        kwargs["scale"] = tuple(volume.voxel_size)
    data: Any = volume.data
    if levels is not None and len(levels) > 1:
        data = [data, *(_as_dtype(level, data.dtype) for level in levels[1:])]
        kwargs["multiscale"] = True
    if volume.metadata.get("kind") == "mask":
        # napari Labels need integers; a lazy bool array stays lazy through astype
        return ([_labels(d) for d in data] if isinstance(data, list) else _labels(data), kwargs, "labels")
    return (data, kwargs, "image")


def _labels(data: Any) -> Any:
    return data.astype(np.uint8) if data.dtype == bool else data


def _as_dtype(level: Any, dtype: Any) -> Any:
    if np.dtype(dtype) == level.dtype:
        return level
    return level != 0 if np.dtype(dtype).kind == "b" else level.astype(dtype)


def _pyramid(volume: Volume) -> list[Any] | None:
    """The levels of a lazily read OME-Zarr pyramid behind ``volume`` (level 0 first), or None for one level."""
    meta = volume.metadata
    if meta.get("format") != "zarr" or not meta.get("lazy") or int(meta.get("n_levels") or 1) < 2:
        return None
    levels = ome_levels(meta["source_path"])
    if len(levels) < 2 or tuple(levels[0].shape) != volume.shape:
        return None
    return levels


def layer_voxel_size(meta: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x) in nm from a layer's attributes.

    The layer ``scale`` is taken as nm (our reader sets it so); napari's default all-ones scale means "unknown", in
    which case a ``voxel_size_nm`` recorded in the layer metadata is used. A 2D scale (y, x) gets z = x.
    """
    scale = meta.get("scale")
    if scale is not None:
        values = [float(v) for v in scale]
        if len(values) in (2, 3) and not all(v == 1.0 for v in values):
            return (values[1], values[0], values[1]) if len(values) == 2 else tuple(values)  # type: ignore[return-value]
    saved = (meta.get("metadata") or {}).get("voxel_size_nm")
    if saved is not None and len(saved) == 3:
        return tuple(float(v) for v in saved)  # type: ignore[return-value]
    return None


def _write_layer(path: str, data: Any, meta: Mapping[str, Any]) -> str:
    if isinstance(data, list):  # multiscale layer: save the full-resolution level
        data = data[0]
    params = dict(meta.get("metadata") or {})
    if meta.get("name"):
        params.setdefault("layer_name", str(meta["name"]))
    # napari's save dialog already asked the user before replacing an existing file, so the hook overwrites
    written = write_volume(path, data, voxel_size=layer_voxel_size(meta), metadata=params, overwrite=True)
    return str(written)


def write_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: ImageJ TIFF with voxel size and the layer's metadata as parameters."""
    return [_write_layer(path, data, meta)]


def write_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: OME-Zarr (chunked per slice) with voxel size and the layer's metadata."""
    return [_write_layer(path, data, meta)]
