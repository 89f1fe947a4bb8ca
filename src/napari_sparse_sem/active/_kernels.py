"""Compiled (numba) inner loops of the whole-image samplers; imported lazily by :mod:`.wdpp` so napari starts fast."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _block_argmax(values: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> tuple[float, int]:
    best = -1.0
    best_i = -1
    width = values.shape[1]
    for y in range(y0, y1):
        for x in range(x0, x1):
            v = values[y, x]
            if v > best:
                best = v
                best_i = y * width + x
    return best, best_i


@njit(cache=True)
def _refresh_block(d2: np.ndarray, bmax: np.ndarray, bidx: np.ndarray, by: int, bx: int, block: int) -> None:
    height, width = d2.shape
    v, i = _block_argmax(d2, by * block, min(height, by * block + block), bx * block, min(width, bx * block + block))
    bmax[by, bx] = v
    bidx[by, bx] = i


@njit(cache=True)
def _refresh_row(bmax: np.ndarray, row_max: np.ndarray, row_col: np.ndarray, by: int) -> None:
    best = -np.inf
    col = 0
    for bx in range(bmax.shape[1]):
        if bmax[by, bx] > best:
            best = bmax[by, bx]
            col = bx
    row_max[by] = best
    row_col[by] = col


@njit(cache=True)
def _refresh_all(
    d2: np.ndarray, bmax: np.ndarray, bidx: np.ndarray, row_max: np.ndarray, row_col: np.ndarray, block: int
) -> None:
    for by in range(bmax.shape[0]):
        for bx in range(bmax.shape[1]):
            _refresh_block(d2, bmax, bidx, by, bx, block)
        _refresh_row(bmax, row_max, row_col, by)


@njit(cache=True)
def greedy_map_local(
    q: np.ndarray,
    k: int,
    sigma: float,
    radius: int,
    block: int,
    tolerance: float,
    forced_y: np.ndarray,
    forced_x: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Greedy MAP of the L-ensemble L = diag(q) S diag(q), S_ij = exp(-d²/σ²) cut off at Chebyshev distance ``radius``.

    The fast greedy update of Chen et al. (NeurIPS 2018): each pixel keeps its conditional variance d_i² given the
    points chosen so far; choosing j updates only the pixels within ``radius`` of j (the kernel is zero beyond it),
    with the Cholesky rows stored as one (2r+1)² patch per chosen point. The running maximum is kept per
    ``block``×``block`` block. Stops early when the largest d² falls to ``tolerance`` (the kernel is exhausted).
    Returns the rows, the columns and the number chosen.
    """
    height, width = q.shape
    size = 2 * radius + 1
    g = np.empty((size, size))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            g[dy + radius, dx + radius] = np.exp(-(dy * dy + dx * dx) / (sigma * sigma))
    d2 = np.empty((height, width))
    for y in range(height):
        for x in range(width):
            d2[y, x] = q[y, x] * q[y, x] if q[y, x] > 0 else -1.0
    n_forced = len(forced_y)
    total = n_forced + k
    patches = np.zeros((total, size, size), dtype=np.float32)
    sel_y = np.empty(total, dtype=np.int64)
    sel_x = np.empty(total, dtype=np.int64)
    weight = q.copy()
    for f in range(n_forced):
        weight[forced_y[f], forced_x[f]] = 1.0
        d2[forced_y[f], forced_x[f]] = 1.0
    # buckets of chosen points, cell size = radius + 1, as linked lists
    cell = radius + 1
    n_cy = (height + cell - 1) // cell
    n_cx = (width + cell - 1) // cell
    head = -np.ones((n_cy, n_cx), dtype=np.int64)
    nxt = -np.ones(total, dtype=np.int64)
    # block maxima, and the maximum of every row of blocks, so the argmax costs O(rows + columns of blocks)
    n_by = (height + block - 1) // block
    n_bx = (width + block - 1) // block
    bmax = np.empty((n_by, n_bx))
    bidx = np.empty((n_by, n_bx), dtype=np.int64)
    row_max = np.empty(n_by)
    row_col = np.empty(n_by, dtype=np.int64)
    _refresh_all(d2, bmax, bidx, row_max, row_col, block)
    near = np.empty(total, dtype=np.int64)
    count = 0
    step = 0
    for it in range(total):
        if it < n_forced:
            jy = forced_y[it]
            jx = forced_x[it]
            best = d2[jy, jx]
            if best <= 1e-6:  # already explained by the forced pixels before it
                d2[jy, jx] = -1.0
                continue
        else:
            if it == n_forced and n_forced > 0:
                _refresh_all(d2, bmax, bidx, row_max, row_col, block)
            best_row = 0
            for by in range(n_by):
                if row_max[by] > row_max[best_row]:
                    best_row = by
            best = row_max[best_row]
            best_i = bidx[best_row, row_col[best_row]]
            if best <= tolerance:
                break
            jy = best_i // width
            jx = best_i % width
        dj = np.sqrt(best)
        qj = weight[jy, jx]
        # chosen points within the box of j (only they have Cholesky entries at j)
        n_near = 0
        cy, cx = jy // cell, jx // cell
        for ny in range(max(0, cy - 1), min(n_cy, cy + 2)):
            for nx in range(max(0, cx - 1), min(n_cx, cx + 2)):
                t = head[ny, nx]
                while t >= 0:
                    if abs(sel_y[t] - jy) <= radius and abs(sel_x[t] - jx) <= radius:
                        near[n_near] = t
                        n_near += 1
                    t = nxt[t]
        y0, y1 = max(0, jy - radius), min(height, jy + radius + 1)
        x0, x1 = max(0, jx - radius), min(width, jx + radius + 1)
        for iy in range(y0, y1):
            for ix in range(x0, x1):
                if d2[iy, ix] < 0:
                    continue
                s = g[iy - jy + radius, ix - jx + radius] * weight[iy, ix] * qj
                for a in range(n_near):
                    t = near[a]
                    oy = iy - sel_y[t]
                    ox = ix - sel_x[t]
                    if -radius <= oy <= radius and -radius <= ox <= radius:
                        s -= (
                            patches[t, oy + radius, ox + radius]
                            * patches[t, jy - sel_y[t] + radius, jx - sel_x[t] + radius]
                        )
                e = s / dj
                patches[step, iy - jy + radius, ix - jx + radius] = e
                d2[iy, ix] = max(0.0, d2[iy, ix] - e * e)
        d2[jy, jx] = -1.0
        sel_y[step] = jy
        sel_x[step] = jx
        nxt[step] = head[cy, cx]
        head[cy, cx] = step
        step += 1
        if it < n_forced:
            continue  # block maxima are recomputed once all forced pixels are in
        count += 1
        for by in range(y0 // block, (y1 - 1) // block + 1):
            for bx in range(x0 // block, (x1 - 1) // block + 1):
                _refresh_block(d2, bmax, bidx, by, bx, block)
            _refresh_row(bmax, row_max, row_col, by)
    first = step - count
    return sel_y[first:step], sel_x[first:step], count


@njit(cache=True)
def sequential_thinning(K: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Exact draw from the DPP with marginal kernel ``K`` (n × n, eigenvalues in [0, 1]) by the sequential Bernoulli
    chain rule (Poulson 2019; Launay, Galerne & Desolneux 2020): item j joins with its conditional probability, then
    the rest of K is conditioned on that outcome. ``uniforms`` are n draws from U(0, 1). Returns a boolean vector."""
    n = K.shape[0]
    A = K.copy()
    chosen = np.zeros(n, dtype=np.bool_)
    for j in range(n):
        p = min(max(A[j, j], 0.0), 1.0)
        if uniforms[j] < p:
            chosen[j] = True
            pivot = p
        else:
            pivot = p - 1.0
        if abs(pivot) < 1e-12:
            continue
        for a in range(j + 1, n):
            f = A[a, j] / pivot
            if f == 0.0:
                continue
            for b in range(j + 1, n):
                A[a, b] -= f * A[j, b]
    return chosen


@njit(cache=True)
def dart_throw(ys: np.ndarray, xs: np.ndarray, radii: np.ndarray, height: int, width: int, limit: int) -> np.ndarray:
    """Random sequential adsorption with a radius per candidate: candidates (in the given order) are accepted when no
    accepted point lies within their own radius. Stops after ``limit`` acceptances. Returns the accepted indices."""
    occupied = np.zeros((height, width), dtype=np.bool_)
    accepted = np.empty(min(limit, len(ys)), dtype=np.int64)
    count = 0
    for c in range(len(ys)):
        if count >= limit:
            break
        y, x, r = ys[c], xs[c], radii[c]
        ri = int(np.floor(r))
        r2 = r * r
        free = True
        for yy in range(max(0, y - ri), min(height, y + ri + 1)):
            dy2 = (yy - y) * (yy - y)
            for xx in range(max(0, x - ri), min(width, x + ri + 1)):
                if occupied[yy, xx] and dy2 + (xx - x) * (xx - x) < r2:
                    free = False
                    break
            if not free:
                break
        if free:
            occupied[y, x] = True
            accepted[count] = c
            count += 1
    return accepted[:count]
