"""CUDA kernel of the Monte Carlo teacher: one GPU thread per (pixel, electron), the physics of ``_mc_kernel``.

The kernel calls :func:`~napari_sparse_sem.surrogate._mc_kernel.trace_electron`, a ``numba.njit`` function (as are
the ones it calls): numba compiles them for the GPU as device functions, so the screened-Rutherford / Joy–Luo physics,
the cell grid and the signed distances exist once for both targets. Electron ``e`` of pixel ``p`` draws from the same
stream as on the CPU (``_seed(seed, index[p] * electrons + e)``); each thread adds its BSE, SE and step count to its
pixel with ``cuda.atomic.add`` and writes its deepest point directly.

What to expect against the CPU kernel: under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the device functions
run as the same compiled CPU code, so every electron is bit-identical to the CPU kernel's (per-pixel SE sums only up to
rounding, as the atomic additions come in any order). On a real GPU, ``log``/``exp``/``sin``/``cos`` and fused
multiply–adds round differently in the last bits and trajectories diverge after a few steps: the images agree in
distribution (η, SE yield, depths within statistical error), not electron by electron.

This module imports ``numba.cuda`` at import time; :mod:`~napari_sparse_sem.surrogate.montecarlo` imports it only when a
run asks for the GPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda
from numba.core import config as _numba_config

from napari_sparse_sem.surrogate._mc_kernel import trace_electron

THREADS_PER_BLOCK = 128
MAX_THREADS_PER_LAUNCH = 1 << 22  # trajectories per launch: bounds a launch's run time (and the simulator's threads)

if _numba_config.ENABLE_CUDASIM:

    def _physics(*args: Any) -> tuple:
        """Simulator only: the kernel's arrays arrive wrapped; the njit physics needs the numpy arrays inside."""
        return trace_electron(*(a._item._ary if hasattr(a, "_item") else a for a in args))

else:
    _physics = trace_electron  # compiled by numba as a device function of the kernel


@cuda.jit
def _trace_kernel(
    start,
    count,
    pixel_xy,
    pixel_index,
    electrons,
    z0,
    direction0,
    seed,
    tables,
    table_step_kev,
    cutoff_kev,
    energy_kev,
    bse_min_kev,
    bse_cos_min,
    se_lambda,
    se_per_kev,
    bulk,
    bounds,
    kind,
    center,
    radius,
    half_height,
    rotation,
    starts,
    items,
    dims,
    cell,
    reach,
    record_depth,
    bse_out,
    se_out,
    depth_out,
    steps_out,
):
    """Trajectories ``start`` .. ``start + count`` of the flat (pixel, electron) index space, one per thread."""
    i = cuda.grid(1)
    if i >= count:
        return
    g = start + i
    p = g // electrons
    e = g - p * electrons
    bse, se, deepest, steps = _physics(
        pixel_xy[p, 0], pixel_xy[p, 1], seed, pixel_index[p] * electrons + e, 0.0, z0, direction0, tables,
        table_step_kev, cutoff_kev, energy_kev, bse_min_kev, bse_cos_min, se_lambda, se_per_kev, bulk, bounds, kind,
        center, radius, half_height, rotation, starts, items, dims, cell, reach,
    )  # fmt: skip
    if bse > 0.0:
        cuda.atomic.add(bse_out, p, bse)
    if se != 0.0:
        cuda.atomic.add(se_out, p, se)
    cuda.atomic.add(steps_out, p, steps)
    if record_depth:
        depth_out[p, e] = deepest


def to_device(array: Any) -> Any:
    """A device copy of a numpy array (an empty one becomes one zero row: the kernel never reads it); others as is."""
    if not isinstance(array, np.ndarray):
        return array
    if array.size == 0:
        array = np.zeros((1, *array.shape[1:]), array.dtype)
    return cuda.to_device(np.ascontiguousarray(array))


def trace_pixels_cuda(
    pixel_xy,
    electrons,
    z0,
    direction0,
    seed,
    first_index,
    tables,
    table_step_kev,
    cutoff_kev,
    energy_kev,
    bse_min_kev,
    bse_cos_min,
    se_lambda,
    se_per_kev,
    bulk,
    bounds,
    kind,
    center,
    radius,
    half_height,
    rotation,
    starts,
    items,
    dims,
    cell,
    reach,
    bse_out,
    se_out,
    depth_out,
    steps_out,
    *,
    max_threads: int = MAX_THREADS_PER_LAUNCH,
) -> None:
    """:func:`~napari_sparse_sem.surrogate._mc_kernel.trace_pixels` on the GPU: same arguments, same streams.

    Adds into ``bse_out``, ``se_out``, ``steps_out`` and (when it has ``electrons`` columns) ``depth_out`` on the host.
    ``first_index`` is an int (pixel ``p`` is number ``first_index + p``, as on the CPU) or an int64 array with each
    pixel's number, so pixels of several rows of a region go in one launch. Scene and table arguments may already be
    device arrays (see :func:`to_device`), which saves copying them for every call. Launches hold at most
    ``max_threads`` trajectories each.
    """
    n_pixels = len(pixel_xy)
    total = n_pixels * int(electrons)
    if total == 0:
        return
    if np.isscalar(first_index):
        index = np.arange(n_pixels, dtype=np.int64) + int(first_index)
    else:
        index = np.asarray(first_index, dtype=np.int64)
        if index.shape != (n_pixels,):
            raise ValueError(f"first_index must be an int or one index per pixel ({n_pixels}), got {index.shape}")
    record_depth = depth_out.shape[1] >= electrons
    d_bse = cuda.to_device(np.zeros(n_pixels))
    d_se = cuda.to_device(np.zeros(n_pixels))
    d_steps = cuda.to_device(np.zeros(n_pixels, np.int64))
    d_depth = cuda.to_device(np.zeros((n_pixels, electrons) if record_depth else (1, 1)))
    scene = [to_device(a) for a in (pixel_xy, index, direction0, tables, bounds, kind, center, radius, half_height,
                                    rotation, starts, items, dims)]  # fmt: skip
    d_xy, d_index, d_dir, d_tables, d_bounds, d_kind, d_center, d_radius, d_half, d_rot, d_starts, d_items, d_dims = (
        scene
    )
    for start in range(0, total, max_threads):
        count = min(max_threads, total - start)
        blocks = math.ceil(count / THREADS_PER_BLOCK)
        _trace_kernel[blocks, THREADS_PER_BLOCK](
            np.int64(start), np.int64(count), d_xy, d_index, np.int64(electrons), float(z0), d_dir, np.int64(seed),
            d_tables, float(table_step_kev), float(cutoff_kev), float(energy_kev), float(bse_min_kev),
            float(bse_cos_min), float(se_lambda), float(se_per_kev), bool(bulk), d_bounds, d_kind, d_center, d_radius,
            d_half, d_rot, d_starts, d_items, d_dims, float(cell), float(reach), record_depth, d_bse, d_se, d_depth,
            d_steps,
        )  # fmt: skip
    bse_out += d_bse.copy_to_host()
    se_out += d_se.copy_to_host()
    steps_out += d_steps.copy_to_host()
    if record_depth:
        depth_out[:, :electrons] = d_depth.copy_to_host()


def describe_device() -> str:
    """The GPU numba will use, e.g. ``"NVIDIA H200 (cc 9.0)"`` (``"CUDA simulator"`` under the simulator)."""
    if _numba_config.ENABLE_CUDASIM:
        return "CUDA simulator"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    return f"{name} (cc {device.compute_capability[0]}.{device.compute_capability[1]})"
