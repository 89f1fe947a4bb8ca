"""The volume driver: reconstruct a stack slice by slice with any registered method.

For every requested slice ``z`` (increasing order, or in the groups a method asks for with ``slice_groups``: a batch
of slices done at once, whose results arrive together) the driver reads the slab ``[z - context, z + context]``
(clipped at the volume's ends) from the sparse values and the mask, asks the method for the centre slice, writes the
result into ``out[z]`` and yields a :class:`~napari_sparse_sem.runtime.Progress` whose ``partial`` is a
:class:`SliceDone`. Inputs may be numpy, dask or zarr arrays: only the slab is read (each slice once, kept while it
is in the window), so memory stays bounded by the slab, and ``out`` may be a zarr array. Stopping the generator
(``close()``, or ``run_job``'s ``should_stop``) keeps the finished slices in ``out``; untouched slices stay 0. A
method that returns NaN or infinity stops the run with a clear error before that slice is stored: a broken result is
never kept.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_sparse_sem.recon.base import FitPreview, Reconstructor, check_finite, method_class
from napari_sparse_sem.runtime import Job, Progress

__all__ = ["SliceDone", "reconstruct_volume"]


@dataclass
class SliceDone:
    """Partial result of a volume run: slice ``z`` is finished (``image``, (y, x) float32) after ``seconds``.

    ``info`` is the method's :meth:`~napari_sparse_sem.recon.base.Reconstructor.slice_info` (e.g. DIP iterations).
    """

    z: int
    image: np.ndarray
    seconds: float
    info: dict = field(default_factory=dict)


class _SlabReader:
    """Reads (y, x) slices of sparse values and mask on demand, keeping only the current group's windows in memory."""

    def __init__(self, sparse: Any, mask: Any, eager_checked: bool) -> None:
        self.sparse, self.mask = sparse, mask
        self.eager_checked = eager_checked
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _read(self, z: int) -> tuple[np.ndarray, np.ndarray]:
        values = np.array(self.sparse[z], dtype=np.float32)
        known = np.array(self.mask[z]).astype(bool, copy=False)
        if not self.eager_checked:
            _check_values(values, f"slice {z} of sparse")
        return values, known

    def keep(self, needed: set[int]) -> None:
        """Forget the slices outside ``needed`` (the windows of the group about to be done)."""
        for old in [k for k in self.cache if k not in needed]:
            del self.cache[old]

    def slab(self, z0: int, z1: int) -> tuple[np.ndarray, np.ndarray]:
        for z in range(z0, z1):
            if z not in self.cache:
                self.cache[z] = self._read(z)
        values = np.stack([self.cache[z][0] for z in range(z0, z1)])
        known = np.stack([self.cache[z][1] for z in range(z0, z1)])
        return values, known


def _check_values(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains NaN or infinite values; replace them (e.g. with 0 and unscan those pixels)")
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            f"{what} has values in [{values.min():g}, {values.max():g}], outside [0, 1]; "
            "scale it first (napari_sparse_sem.io.volume.to_float01)"
        )


class _OneSlice:
    """A 2D array seen as a one-slice (1, y, x) stack, for any array type (numpy, dask, zarr)."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = (1, *tuple(array.shape))

    def __getitem__(self, z: int) -> Any:
        if z != 0:
            raise IndexError(z)
        return self.array[...]


def _as_3d(array: Any, what: str) -> tuple[Any, bool]:
    ndim = len(array.shape)
    if ndim == 2:
        return _OneSlice(array), True
    if ndim == 3:
        return array, False
    raise ValueError(f"{what} must be a 2D (y, x) image or a 3D (z, y, x) stack, got shape {tuple(array.shape)}")


def _checked_groups(reconstructor: Reconstructor, todo: list[int]) -> list[list[int]]:
    """The method's :meth:`~napari_sparse_sem.recon.base.Reconstructor.slice_groups`, checked to cover every slice
    to do exactly once."""
    groups = [[int(z) for z in group] for group in reconstructor.slice_groups(list(todo))]
    flat = [z for group in groups for z in group]
    if sorted(flat) != list(todo) or any(not group for group in groups):
        raise RuntimeError(f"method {reconstructor.name!r} grouped the slices wrongly: every slice must come once")
    return groups


def _group_text(group: list[int]) -> str:
    """``3, 40, 77`` (at most four numbers, then ``...``)."""
    head = ", ".join(str(z) for z in group[:4])
    return head + (", ..." if len(group) > 4 else "")


def reconstruct_volume(
    sparse: Any,
    mask: Any,
    method: str | Reconstructor,
    *,
    device: str = "cpu",
    options: dict[str, Any] | None = None,
    slices: Iterable[int] | None = None,
    out: Any = None,
) -> Job[Any]:
    """Reconstruct ``slices`` (default: all) of a sparse acquisition; a generator job that returns ``out``.

    ``sparse``: float values in [0, 1], unscanned pixels 0; ``mask``: bool, same shape; both (z, y, x) or (y, x)
    (treated as one slice; ``out`` then has the 2D shape too). ``method``: a registered name (created with ``device``
    and ``options``) or a ready :class:`Reconstructor`. ``out``: where results go (default a new float32 zeros array;
    pass e.g. a zarr array for big volumes). Yields one :class:`Progress` per finished slice with a
    :class:`SliceDone` as ``partial``; methods with inner iterations also yield their own events in between
    (``step`` = slices finished so far; their ``partial`` passed through, a :class:`FitPreview` of the slice itself
    with ``z`` filled in). The reconstructor is closed at
    the end, also when the run fails or is stopped. Inputs are never modified. Before the first slice the method's
    :meth:`~napari_sparse_sem.recon.base.Reconstructor.prepare` sees the whole (3D) inputs and the slice list once.
    """
    # --- validation, before any work -------------------------------------------------------------------------
    if tuple(sparse.shape) != tuple(mask.shape):
        raise ValueError(
            f"sparse {tuple(sparse.shape)} and mask {tuple(mask.shape)} must have the same shape "
            "(one mask value per pixel)"
        )
    sparse3, flat_input = _as_3d(sparse, "sparse")
    mask3, _ = _as_3d(mask, "mask")
    nz = int(sparse3.shape[0])
    dtype = np.dtype(getattr(sparse, "dtype", np.float32))
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(
            f"sparse must be floating point in [0, 1], got dtype {dtype}; "
            "convert it first (napari_sparse_sem.io.volume.to_float01)"
        )
    if slices is None:
        todo = list(range(nz))
    else:
        requested = [int(z) for z in slices]
        bad = [z for z in requested if not 0 <= z < nz]
        if bad:
            raise ValueError(f"slice indices {bad} are out of range: the volume has slices 0..{nz - 1}")
        todo = sorted(set(requested))
    if isinstance(method, Reconstructor):
        if options:
            raise ValueError("options are given but method is already a Reconstructor instance; pass its name instead")
        cls = None
    else:
        cls = method_class(method)  # unknown names fail here
    eager = isinstance(sparse, np.ndarray) and isinstance(mask, np.ndarray)
    if eager:  # cheap for in-memory data; lazy inputs are checked slab by slab as they are read
        _check_values(sparse, "sparse")
        scanned = mask.reshape(nz, -1).any(axis=1)
        empty = [z for z in todo if not scanned[z]]
        if empty:
            raise ValueError(f"slice {empty[0]} has no scanned pixels; check the mask")
    if out is None:
        out = np.zeros(sparse.shape, dtype=np.float32)
    elif tuple(out.shape) != tuple(sparse.shape):
        raise ValueError(f"out has shape {tuple(out.shape)} but the reconstruction has shape {tuple(sparse.shape)}")

    # --- work ------------------------------------------------------------------------------------------------
    reconstructor = method if cls is None else cls(device=device, **(options or {}))
    try:
        reconstructor.prepare(sparse3, mask3, todo)
        context = max(0, int(reconstructor.context))
        reader = _SlabReader(sparse3, mask3, eager_checked=eager)
        groups = _checked_groups(reconstructor, todo)
        total, done = len(todo), 0
        for group in groups:
            windows = [(max(0, z - context), min(nz, z + context + 1)) for z in group]
            reader.keep({k for z0, z1 in windows for k in range(z0, z1)})  # each slice read once per window it stays in
            slabs = []
            for z, (z0, z1) in zip(group, windows, strict=True):
                values, known = reader.slab(z0, z1)
                if not known[z - z0].any():
                    raise ValueError(f"slice {z} has no scanned pixels; check the mask")
                slabs.append((values, known, z - z0))
            label = f"slice {group[0]}" if len(group) == 1 else f"slices {_group_text(group)}"
            seconds = 0.0
            inner = reconstructor.reconstruct_batch_job(slabs)
            try:
                while True:
                    started = time.perf_counter()
                    try:
                        event = next(inner)
                    except StopIteration as stop:
                        seconds += time.perf_counter() - started
                        results = stop.value
                        break
                    seconds += time.perf_counter() - started
                    partial = event.partial
                    if isinstance(partial, FitPreview) and not partial.warmup:
                        index = partial.z if len(group) > 1 and partial.z is not None else 0
                        partial = dataclasses.replace(partial, z=group[min(max(int(index), 0), len(group) - 1)])
                    yield Progress(done, total, f"{label}: {event.message}", partial)
            finally:
                inner.close()
            if len(results) != len(group):
                raise RuntimeError(
                    f"method {reconstructor.name!r} returned {len(results)} result(s) for {len(group)} slice(s)"
                )
            share = seconds / len(group)
            for z, (image, info) in zip(group, results, strict=True):
                what = f"the {reconstructor.name!r} result of slice {z}"
                image = check_finite(np.asarray(image, dtype=np.float32), what)
                if flat_input:
                    out[...] = image
                else:
                    out[z] = image
                done += 1
                yield Progress(done, total, f"slice {z}: {share:.2f} s", SliceDone(z, image, share, dict(info)))
    finally:
        reconstructor.close()
    return out
