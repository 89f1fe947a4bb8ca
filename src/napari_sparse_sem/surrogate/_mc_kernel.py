"""Numba kernel of the Monte Carlo teacher: electron trajectories through a porous solid below a cut plane.

Single-scattering model (D. C. Joy, *Monte Carlo Modeling for Electron Microscopy and Microanalysis*, 1995): free
paths are exponential with the screened-Rutherford elastic mean free path, the polar angle follows the screened
Rutherford distribution, and energy is lost continuously along each path with the Joy–Luo modified Bethe stopping
power. All lengths are nm; the solid is the union of particles (signed distances from ``_sdf``) intersected with the
half-space below the cut plane ``z <= z0`` (or, in bulk mode, that half-space alone). In pores electrons fly straight
(sphere tracing) until they re-enter solid or leave into the open half-space above the cut plane.

Secondary electrons are not tracked as particles: at a random point of every step in solid, SE are generated in
proportion to the energy lost and emitted in one random direction; they escape with probability exp(−L/λ_SE) for the
path length L in solid and count only when their straight flight then reaches the open half-space (SE emitted into a
deep pore are re-absorbed by its walls).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from napari_sparse_sem.surrogate._sdf import max2, min2, primitive_sdf

_BIG = 1.0e30
_MAX_VACUUM_STEPS = 100_000


@numba.njit(cache=True, inline="always")
def _next(state):
    """xorshift64* step: the new state and a uniform double in [0, 1)."""
    state ^= state >> np.uint64(12)
    state ^= state << np.uint64(25)
    state ^= state >> np.uint64(27)
    value = (state * np.uint64(2685821657736338717)) >> np.uint64(11)
    return state, value * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def _seed(seed, index):
    """A well-mixed non-zero state for electron ``index`` (splitmix64 of seed and index)."""
    z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(index) + np.uint64(0x632BE59BD9B4E019)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    if z == np.uint64(0):
        z = np.uint64(1)
    return z


@numba.njit(cache=True)
def solid_sdf(
    px, py, pz, z0, bulk, bounds, kind, center, radius, half_height, rotation, starts, items, dims, cell, reach
):
    """Signed distance to the solid (negative inside); outside the window's sides and bottom there is only vacuum."""
    plane = pz - z0
    if bulk:
        return plane
    if px < 0.0 or py < 0.0 or pz < 0.0 or px > bounds[0] or py > bounds[1]:
        return max2(plane, reach)
    ix = min2(int(px / cell), dims[0] - 1)
    iy = min2(int(py / cell), dims[1] - 1)
    iz = min2(int(pz / cell), dims[2] - 1)
    c = (iz * dims[1] + iy) * dims[0] + ix
    best = reach
    for j in range(starts[c], starts[c + 1]):
        d = primitive_sdf(kind, center, radius, half_height, rotation, items[j], px, py, pz)
        if d < best:
            best = d
    return max2(best, plane)


@numba.njit(cache=True)
def _outside_window(px, py, pz, bulk, bounds):
    if bulk:
        return False
    return px < 0.0 or py < 0.0 or pz < 0.0 or px > bounds[0] or py > bounds[1]


@numba.njit(cache=True, inline="always")
def trace_electron(
    x,
    y,
    seed,
    index,
    se_sum,
    z0,
    direction0,
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
):
    """Primary electron number ``index`` entering at (x, y, z0): ``(bse, se_sum, deepest, steps)``.

    ``bse`` is 1.0 when it leaves as a BSE (else 0.0); its SE are added to ``se_sum`` (a running sum, so the CPU
    kernel's rounding does not depend on how the electrons are split); ``deepest`` is its deepest point below the
    plane and ``steps`` its number of elastic steps. The CPU kernel (:func:`trace_pixels`) and the CUDA kernel
    (``_mc_cuda``, where numba compiles this as a device function) both call it, so the physics exists once.
    """
    state = _seed(seed, index)  # its own random stream
    se_reach = 5.0 * se_lambda
    bse = 0.0
    steps = 0
    z = z0
    u = direction0[0]
    v = direction0[1]
    w = direction0[2]
    energy = energy_kev
    in_solid = False
    entered = False
    deepest = 0.0
    for _ in range(1_000_000):
        if not in_solid:
            # straight flight through vacuum: stop on solid, on leaving upward, or out of the window
            hit = False
            escaped = False
            for _k in range(_MAX_VACUUM_STEPS):
                if z > z0 and w > 0.0:
                    escaped = True
                    break
                if _outside_window(x, y, z, bulk, bounds):
                    break
                d = solid_sdf(x, y, z, z0, bulk, bounds, kind, center, radius, half_height, rotation,
                              starts, items, dims, cell, reach)  # fmt: skip
                if d <= 1e-4:
                    hit = True
                    break
                if w > 0.0:  # moving up: never further than the plane
                    d = min2(d, (z0 - z) / w + 1e-4) if z <= z0 else d
                d = max2(d, 1e-4)
                x += d * u
                y += d * v
                z += d * w
            if escaped:
                if entered and energy >= bse_min_kev and w >= bse_cos_min:
                    bse = 1.0
                break
            if not hit:
                break
            in_solid = True
            entered = True
        index = int(energy / table_step_kev)
        mfp = tables[index, 0]
        alpha = tables[index, 1]
        stopping = tables[index, 2]
        state, r = _next(state)
        step = -mfp * math.log(1.0 - r)
        nx = x + step * u
        ny = y + step * v
        nz = z + step * w
        leaves = False
        end_sdf = nz - z0
        if not bulk:
            end_sdf = solid_sdf(nx, ny, nz, z0, bulk, bounds, kind, center, radius, half_height, rotation,
                                starts, items, dims, cell, reach)  # fmt: skip
        if end_sdf > 0.0:
            leaves = True
        if leaves:
            # the free path crosses a surface: stop at it (memoryless, so no scattering happened before it)
            lo = 0.0
            hi = step
            for _b in range(40):
                mid = 0.5 * (lo + hi)
                if solid_sdf(x + mid * u, y + mid * v, z + mid * w, z0, bulk, bounds, kind, center, radius,
                             half_height, rotation, starts, items, dims, cell, reach) > 0.0:  # fmt: skip
                    hi = mid
                else:
                    lo = mid
                if hi - lo < 1e-3:
                    break
            step = hi + 1e-4
            nx = x + step * u
            ny = y + step * v
            nz = z + step * w
        loss = min2(stopping * step, energy)
        # the SDF is 1-Lipschitz: a step whose end lies deeper than se_reach + step cannot emit SE that escape
        if se_per_kev > 0.0 and (leaves or -end_sdf < se_reach + step):
            state, r = _next(state)
            sx = x + r * step * u
            sy = y + r * step * v
            sz = z + r * step * w
            depth = -solid_sdf(sx, sy, sz, z0, bulk, bounds, kind, center, radius, half_height, rotation,
                               starts, items, dims, cell, reach)  # fmt: skip
            # Russian roulette on the depth: trace with probability q = exp(-depth/λ) and divide by q, which
            # is unbiased because any escape path is at least ``depth`` long (so P/q <= 1)
            depth = max2(depth, 0.0)
            keep = math.exp(-depth / se_lambda)
            state, r = _next(state)
            if r < keep:
                state, r1 = _next(state)
                state, r2 = _next(state)
                se_sum += loss * se_per_kev * _se_escape(
                    sx, sy, sz, r1, r2, se_lambda, depth + se_reach, z0, bulk, bounds, kind, center, radius,
                    half_height, rotation, starts, items, dims, cell, reach,
                ) / keep  # fmt: skip
        x = nx
        y = ny
        z = nz
        energy -= loss
        steps += 1
        if z0 - z > deepest:
            deepest = z0 - z
        if energy <= cutoff_kev:
            break
        if leaves:
            in_solid = False
            continue
        # elastic scattering: screened Rutherford polar angle, uniform azimuth
        state, r = _next(state)
        cos_t = 1.0 - 2.0 * alpha * r / (1.0 + alpha - r)
        sin_t = math.sqrt(max2(0.0, 1.0 - cos_t * cos_t))
        state, r = _next(state)
        phi = 2.0 * math.pi * r
        cos_p = math.cos(phi)
        sin_p = math.sin(phi)
        if abs(w) > 0.99999:
            u = sin_t * cos_p
            v = sin_t * sin_p
            w = cos_t if w > 0.0 else -cos_t
        else:
            t = math.sqrt(1.0 - w * w)
            nu = u * cos_t + sin_t * (u * w * cos_p - v * sin_p) / t
            nv = v * cos_t + sin_t * (v * w * cos_p + u * sin_p) / t
            w = w * cos_t - t * sin_t * cos_p
            u = nu
            v = nv
        norm = 1.0 / math.sqrt(u * u + v * v + w * w)
        u *= norm
        v *= norm
        w *= norm
    return bse, se_sum, deepest, steps


@numba.njit(cache=True, parallel=True)
def trace_pixels(
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
):
    """Trace ``electrons`` primaries at each (x, y) of ``pixel_xy`` (nm) and add their BSE and SE to the outputs.

    ``tables`` rows are (mean free path nm, screening α, stopping power keV/nm) at energies ``i * table_step_kev``.
    ``depth_out[p, e]`` receives each trajectory's deepest point below the plane (when it has room), ``steps_out[p]``
    the number of elastic steps. Electron ``e`` of pixel ``p`` draws from its own seeded stream
    ``_seed(seed, (first_index + p) * electrons + e)``, so the result does not depend on the number of threads.
    """
    n_pixels = pixel_xy.shape[0]
    record_depth = depth_out.shape[1] >= electrons
    for p in numba.prange(n_pixels):
        bse_count = 0.0
        se_sum = 0.0
        step_count = 0
        for e in range(electrons):
            bse, se_sum, deepest, steps = trace_electron(
                pixel_xy[p, 0], pixel_xy[p, 1], seed, (first_index + p) * electrons + e, se_sum, z0, direction0,
                tables, table_step_kev, cutoff_kev, energy_kev, bse_min_kev, bse_cos_min, se_lambda, se_per_kev, bulk,
                bounds, kind, center, radius, half_height, rotation, starts, items, dims, cell, reach,
            )  # fmt: skip
            bse_count += bse
            step_count += steps
            if record_depth:
                depth_out[p, e] = deepest
        bse_out[p] += bse_count
        se_out[p] += se_sum
        steps_out[p] += step_count


@numba.njit(cache=True)
def _se_escape(x, y, z, r1, r2, se_lambda, max_path, z0, bulk, bounds, kind, center, radius, half_height, rotation,
               starts, items, dims, cell, reach):  # fmt: skip
    """Probability that an SE born at (x, y, z) in direction (r1, r2)-isotropic reaches the open half-space.

    Paths in solid longer than ``max_path`` count as absorbed.
    """
    w = 1.0 - 2.0 * r1
    s = math.sqrt(max2(0.0, 1.0 - w * w))
    phi = 2.0 * math.pi * r2
    u = s * math.cos(phi)
    v = s * math.sin(phi)
    travelled = 0.0
    # through the solid: step by the (conservative) depth until outside or too deep to matter
    for _ in range(1_000):
        d = solid_sdf(x, y, z, z0, bulk, bounds, kind, center, radius, half_height, rotation, starts, items, dims,
                      cell, reach)  # fmt: skip
        if d > 0.0:
            break
        step = max2(-d, 0.01)
        travelled += step
        if travelled > max_path:
            return 0.0
        x += step * u
        y += step * v
        z += step * w
    weight = math.exp(-travelled / se_lambda)
    # through the pore: straight until the open half-space (counted) or a wall (re-absorbed)
    for _ in range(_MAX_VACUUM_STEPS):
        if z > z0 and w > 0.0:
            return weight
        if _outside_window(x, y, z, bulk, bounds):
            return 0.0
        d = solid_sdf(x, y, z, z0, bulk, bounds, kind, center, radius, half_height, rotation, starts, items, dims,
                      cell, reach)  # fmt: skip
        if d <= 1e-4:
            return 0.0
        if w > 0.0 and z <= z0:
            d = min2(d, (z0 - z) / w + 1e-4)
        d = max2(d, 1e-4)
        x += d * u
        y += d * v
        z += d * w
    return 0.0
