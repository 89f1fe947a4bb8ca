"""The simulated sparse acquisition of a stack, slice by slice: masks, the (noisy) scan and its time estimate.

One job (:func:`simulate_job`, the project's progress protocol) serves ``sparse-sem simulate``, which streams slices
into disk-backed arrays, and the *Sparse acquisition* widget, which keeps them in memory; both get the same masks and
values for the same :class:`MaskSpec` and :class:`AcquisitionSpec`, and the same :class:`AcquisitionRecord`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_sparse_sem.io.volume import from_float01
from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.sampling.acquisition import simulate_acquisition
from napari_sparse_sem.sampling.path import dense_scan_time, estimate_time
from napari_sparse_sem.sampling.patterns import slice_mask
from napari_sparse_sem.sampling.record import UNIT_RANGE, AcquisitionRecord
from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec


@dataclass
class SimulatedScan:
    """What :func:`simulate_job` produced: the (z, y, x) ``mask`` and ``sparse`` arrays and per-slice figures."""

    mask: Any
    sparse: Any
    mask_spec: MaskSpec
    acquisition: AcquisitionSpec
    coverage: np.ndarray  # achieved, per slice
    scan_s: np.ndarray  # estimated scan time, per slice
    path_length_px: np.ndarray  # beam path, per slice
    dense_slice_s: float  # a dense scan of one slice
    stored_range: tuple[float, float] = UNIT_RANGE
    info: dict[str, Any] = field(default_factory=dict)  # the first mask's pattern details (spacing, ...)

    @property
    def dense_s(self) -> float:
        """A dense scan of every slice."""
        return self.dense_slice_s * len(self.scan_s)

    def record(
        self,
        source: str,
        value_range: tuple[float, float],
        slices: tuple[int, int] | None = None,
        roi: tuple[int, int, int, int] | None = None,
    ) -> AcquisitionRecord:
        """The acquisition record of this scan of ``source`` (a path or a layer name) read over ``value_range``."""
        return AcquisitionRecord(
            mask_spec=self.mask_spec,
            acquisition=self.acquisition,
            coverage=float(np.mean(self.coverage)),
            scan_s=float(np.sum(self.scan_s)),
            dense_s=float(self.dense_s),
            path_length_px=float(np.sum(self.path_length_px)),
            n_slices=len(self.scan_s),
            value_range=(float(value_range[0]), float(value_range[1])),
            stored_range=self.stored_range,
            source=str(source),
            slices=slices,
            roi=roi,
        )


def simulate_job(
    dense: Any,
    mask_spec: MaskSpec,
    acquisition: AcquisitionSpec,
    *,
    sparse_out: Any = None,
    mask_out: Any = None,
    stored_range: tuple[float, float] = UNIT_RANGE,
    z_offset: int = 0,
    first_index: int = 0,
) -> Job[SimulatedScan]:
    """Draw every slice's mask, simulate its scan and estimate its time; yields progress after every slice.

    ``dense`` is a (z, y, x) array with values in [0, 1], or a lazy view of one (read one slice at a time). Slice
    ``i`` gets the mask :func:`slice_mask` draws for index ``i`` and the shot noise of index ``i``. Results go into
    ``sparse_out``/``mask_out`` (e.g. disk-backed arrays; new in-memory float32/bool arrays by default); the stored
    sparse values are the scanned [0, 1] values mapped onto ``stored_range`` in ``sparse_out``'s dtype, unscanned
    pixels 0. ``z_offset`` only names slices in the progress messages. ``first_index`` is the index of ``dense[0]``
    in the whole scan (slice ``i`` gets mask and noise index ``first_index + i``), so a slab simulated on its own
    (block-wise, on a cluster) equals the same slices of the whole stack simulated at once.
    """
    shape = tuple(int(s) for s in dense.shape)
    if len(shape) != 3:
        raise ValueError(f"the dense stack must be (z, y, x), got shape {shape}")
    sparse_out = np.zeros(shape, np.float32) if sparse_out is None else sparse_out
    mask_out = np.zeros(shape, bool) if mask_out is None else mask_out
    for name, array in (("sparse_out", sparse_out), ("mask_out", mask_out)):
        if tuple(array.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(array.shape)}, the dense stack {shape}")
    n, plane_shape = shape[0], shape[1:]
    coverage, scan_s, lengths = np.zeros(n), np.zeros(n), np.zeros(n)
    fixed = None if mask_spec.per_slice else slice_mask(plane_shape, mask_spec, 0)  # one mask for all slices
    fixed_time = None if fixed is None else estimate_time(fixed.path, acquisition)
    info: dict[str, Any] = {}
    for i in range(n):  # keep per-slice figures only: masks and paths of all slices need not fit in memory
        index = first_index + i
        result = fixed if fixed is not None else slice_mask(plane_shape, mask_spec, index)
        timing = fixed_time if fixed_time is not None else estimate_time(result.path, acquisition)
        scanned = simulate_acquisition(np.asarray(dense[i]), result.mask, acquisition, first_slice=index)
        sparse_out[i] = np.where(result.mask, from_float01(scanned, sparse_out.dtype, stored_range), 0)
        mask_out[i] = result.mask
        coverage[i], scan_s[i], lengths[i] = result.coverage, timing.seconds, timing.path_length_px
        if i == 0:
            info = dict(result.info)
        yield Progress(i + 1, n, f"slice {z_offset + i}")
    return SimulatedScan(
        mask=mask_out,
        sparse=sparse_out,
        mask_spec=mask_spec,
        acquisition=acquisition,
        coverage=coverage,
        scan_s=scan_s,
        path_length_px=lengths,
        dense_slice_s=float(dense_scan_time(plane_shape, acquisition).seconds),
        stored_range=(float(stored_range[0]), float(stored_range[1])),
        info=info,
    )
