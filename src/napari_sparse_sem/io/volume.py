"""The in-memory volume model and the value conventions every module shares.

Volumes are ``(z, y, x)``; a 2D image is a one-slice volume. Computation happens on float32 in [0, 1]; the original
value range and dtype are kept so results can be saved back in the source type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A loaded stack: ``data`` (numpy, dask or zarr array, (z, y, x)), voxel size in nm (z, y, x) when known."""

    data: Any
    voxel_size: tuple[float, float, float] | None = None
    name: str = "volume"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]


def as_zyx(array: Any, what: str = "image") -> Any:
    """Check dimensionality and return a (z, y, x) view: 2D gets a leading axis; RGB(A) and 4D+ are refused."""
    ndim = array.ndim
    shape = tuple(array.shape)
    if ndim == 2:
        return array[None]
    if ndim == 3:
        if shape[-1] in (3, 4) and shape[0] > 4:
            raise ValueError(
                f"{what} has shape {shape}, which looks like an RGB/RGBA image; convert it to grayscale first "
                "(e.g. napari: Layers > Convert > to grayscale, or skimage.color.rgb2gray)"
            )
        return array
    if ndim < 2:
        raise ValueError(f"{what} must be a 2D image or a 3D (z, y, x) stack, got {ndim}D data of shape {shape}")
    raise ValueError(
        f"{what} has {ndim} dimensions {shape}; only 2D images and 3D (z, y, x) stacks are supported — "
        "select one channel/time point first"
    )


class SliceMap:
    """A lazy view that applies ``func`` to each slice of ``source`` when it is read (``view[z]``).

    Our writers and the reconstruction driver read volumes one slice at a time, so this keeps a per-slice conversion
    (scaling to [0, 1], back to the source dtype, mask to bool) from ever materialising the whole volume; unlike
    ``dask.array.from_array``, it never copies an in-memory or memory-mapped source.
    """

    def __init__(self, source: Any, func: Any, dtype: Any) -> None:
        self.source, self.func, self.dtype = source, func, np.dtype(dtype)
        self.shape = tuple(int(n) for n in source.shape)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self.func(np.asarray(self.source[index])), dtype=self.dtype)


def value_range(array: Any) -> tuple[float, float]:
    """The range mapped to [0, 1]: the dtype's range for unsigned integers; for floats (0, 1) when the data already lie
    in [0, 1] (so scores stay comparable across crops), else the data's min/max (also for signed integers).

    Lazy arrays (dask, zarr, h5py, :class:`SliceMap`) are scanned one slice at a time.
    """
    dtype = np.dtype(array.dtype)
    if dtype.kind == "b":
        return 0.0, 1.0
    if dtype.kind == "u":
        return 0.0, float(np.iinfo(dtype).max)
    if isinstance(array, np.ndarray):
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
    else:
        lo, hi = np.inf, -np.inf
        for z in range(array.shape[0]):
            plane = np.asarray(array[z])
            lo, hi = min(lo, float(np.nanmin(plane))), max(hi, float(np.nanmax(plane)))
    if dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return lo, hi


def to_float01(array: Any, what: str = "image", value_range_: tuple[float, float] | None = None) -> np.ndarray:
    """float32 copy of ``array`` scaled to [0, 1]; NaN/inf is a clear error (the input is never modified)."""
    data = np.asarray(array)
    if data.dtype.kind == "c":
        raise ValueError(f"{what} holds complex values; take the magnitude or real part first")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise ValueError(f"{what} contains {bad} NaN/inf values; replace them (e.g. with np.nan_to_num) before use")
    lo, hi = value_range(data) if value_range_ is None else value_range_
    out = data.astype(np.float32, copy=True)
    if hi > lo:
        out -= lo
        out /= hi - lo
    else:
        out[...] = 0.0
    return np.clip(out, 0.0, 1.0, out=out)


def from_float01(array: np.ndarray, dtype: np.dtype | str, value_range_: tuple[float, float]) -> np.ndarray:
    """Map a [0, 1] float array back to ``dtype`` over ``value_range_`` (rounding and clipping for integers)."""
    dtype = np.dtype(dtype)
    lo, hi = value_range_
    out = np.asarray(array, dtype=np.float64) * (hi - lo) + lo
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(dtype)
