"""Numba kernels for signed distances to the Boolean model's particles, and a uniform grid to find nearby ones.

A particle's signed distance function (SDF) is negative inside, zero on the surface and the Euclidean distance
outside; the union's SDF is the minimum over particles (exact outside, a lower bound on the depth inside). The cell
grid lists, for each cell, every particle whose bounding box comes within ``reach`` of it, so the minimum over a
cell's list is the union's SDF wherever that is below ``reach`` and otherwise at least ``reach`` — enough for sphere
tracing and for inside tests. Used by :func:`~napari_sparse_sem.surrogate.geometry.voxelize` and the Monte Carlo.
"""

from __future__ import annotations

import math

import numba
import numpy as np

SPHERE, CYLINDER, CUBE = 0, 1, 2


@numba.njit(cache=True, inline="always")
def max2(a, b):
    """``max(a, b)`` as Python has it; numba 0.68's built-in ``max`` (a ``*args`` overload) does not compile for the
    CUDA target that comes with numba, and the Monte Carlo kernel's functions also run there."""
    return b if b > a else a


@numba.njit(cache=True, inline="always")
def min2(a, b):
    """``min(a, b)`` as Python has it (see :func:`max2`)."""
    return b if b < a else a


@numba.njit(cache=True, inline="always")
def primitive_sdf(kind, center, radius, half_height, rotation, i, px, py, pz):
    """Signed distance from (px, py, pz) to particle ``i``."""
    qx = px - center[i, 0]
    qy = py - center[i, 1]
    qz = pz - center[i, 2]
    if kind[i] == SPHERE:
        return math.sqrt(qx * qx + qy * qy + qz * qz) - radius[i]
    rot = rotation[i]
    lx = rot[0, 0] * qx + rot[1, 0] * qy + rot[2, 0] * qz
    ly = rot[0, 1] * qx + rot[1, 1] * qy + rot[2, 1] * qz
    lz = rot[0, 2] * qx + rot[1, 2] * qy + rot[2, 2] * qz
    if kind[i] == CYLINDER:
        dx = math.sqrt(lx * lx + ly * ly) - radius[i]
        dy = abs(lz) - half_height[i]
        ox = max2(dx, 0.0)
        oy = max2(dy, 0.0)
        return min2(max2(dx, dy), 0.0) + math.sqrt(ox * ox + oy * oy)
    s = radius[i]
    dx = abs(lx) - s
    dy = abs(ly) - s
    dz = abs(lz) - s
    ox = max2(dx, 0.0)
    oy = max2(dy, 0.0)
    oz = max2(dz, 0.0)
    return min2(max2(dx, max2(dy, dz)), 0.0) + math.sqrt(ox * ox + oy * oy + oz * oz)


@numba.njit(cache=True)
def fill_solid(solid, z_offset, kind, center, radius, half_height, rotation, low, high):
    """Set ``solid[z, y, x]`` where the voxel centre lies inside a particle; ``z_offset`` is the first slice's z."""
    depth, height, width = solid.shape
    for i in range(kind.shape[0]):
        x0 = max(0, math.ceil(low[i, 0] - 0.5))
        x1 = min(width - 1, math.floor(high[i, 0] - 0.5))
        y0 = max(0, math.ceil(low[i, 1] - 0.5))
        y1 = min(height - 1, math.floor(high[i, 1] - 0.5))
        z0 = max(0, math.ceil(low[i, 2] - 0.5 - z_offset))
        z1 = min(depth - 1, math.floor(high[i, 2] - 0.5 - z_offset))
        for z in range(z0, z1 + 1):
            pz = z + 0.5 + z_offset
            for y in range(y0, y1 + 1):
                py = y + 0.5
                for x in range(x0, x1 + 1):
                    if (
                        not solid[z, y, x]
                        and primitive_sdf(kind, center, radius, half_height, rotation, i, x + 0.5, py, pz) <= 0.0
                    ):
                        solid[z, y, x] = True


def build_cell_grid(
    low: np.ndarray,
    high: np.ndarray,
    window: tuple[int, int, int],
    cell: float,
    reach: float,
    shapes: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR lists of the particles near each cell of a grid over the window (cells of ``cell`` voxels).

    ``shapes`` = ``(kind, center, radius, half_height, rotation)`` in the units of ``low``/``high`` turns on a finer
    cull: a particle whose bounding box touches a cell is kept only if its signed distance at the cell centre is
    below ``reach`` plus the cell's half diagonal (the SDF is 1-Lipschitz, so nothing within ``reach`` is lost). Long
    tilted cylinders fill far fewer cells that way than with their axis-aligned boxes.

    Returns ``(starts, items, dims)``: particle indices of cell ``c`` are ``items[starts[c]:starts[c + 1]]``, cells
    are numbered ``(iz * ny + iy) * nx + ix`` and ``dims`` is ``(nx, ny, nz)``.
    """
    depth, height, width = window
    dims = np.array(
        [max(1, math.ceil(width / cell)), max(1, math.ceil(height / cell)), max(1, math.ceil(depth / cell))]
    )
    first = np.clip(np.floor((low - reach) / cell).astype(np.int64), 0, dims - 1)
    last = np.clip(np.floor((high + reach) / cell).astype(np.int64), 0, dims - 1)
    inside = np.all(high + reach >= 0, axis=1) & np.all(low - reach <= dims * cell, axis=1)
    if shapes is None:
        n = len(low)
        shapes = (np.zeros(n, np.int64), np.zeros((n, 3)), np.zeros(n), np.zeros(n), np.zeros((n, 3, 3)))
        limit = np.inf
    else:
        limit = reach + cell * math.sqrt(3.0) / 2.0
    return _fill_grid(first, last, inside, dims, cell, limit, *shapes)


@numba.njit(cache=True)
def _cell_keeps(i, ix, iy, iz, cell, limit, kind, center, radius, half_height, rotation):
    if limit == np.inf:
        return True
    px, py, pz = (ix + 0.5) * cell, (iy + 0.5) * cell, (iz + 0.5) * cell
    return primitive_sdf(kind, center, radius, half_height, rotation, i, px, py, pz) < limit


@numba.njit(cache=True)
def _fill_grid(first, last, inside, dims, cell, limit, kind, center, radius, half_height, rotation):
    nx, ny, nz = dims[0], dims[1], dims[2]
    counts = np.zeros(nx * ny * nz + 1, dtype=np.int64)
    for sweep in range(2):
        if sweep == 1:
            starts = np.cumsum(counts)
            items = np.empty(starts[-1], dtype=np.int64)
            fill = starts[:-1].copy()
        for i in range(first.shape[0]):
            if not inside[i]:
                continue
            for iz in range(first[i, 2], last[i, 2] + 1):
                for iy in range(first[i, 1], last[i, 1] + 1):
                    for ix in range(first[i, 0], last[i, 0] + 1):
                        if not _cell_keeps(i, ix, iy, iz, cell, limit, kind, center, radius, half_height, rotation):
                            continue
                        c = (iz * ny + iy) * nx + ix
                        if sweep == 0:
                            counts[c + 1] += 1
                        else:
                            items[fill[c]] = i
                            fill[c] += 1
    return starts, items, dims
