"""Sparse-scan mask patterns: which pixels the beam visits, at a requested coverage (fraction of pixels).

Where each pattern comes from:

* ``random`` — pixels drawn uniformly without replacement, the sparse pattern of Trampert et al. ("How should a fixed
  budget of dwell time be spent in scanning electron microscopy to optimize image quality?", Ultramicroscopy 191,
  2018; "Deep Learning for Sparse Scanning Electron Microscopy", Microsc. Microanal. 25(S2), 2019).
* ``grid`` — a regular square grid whose points are randomly perturbed (jittered), and ``spiral`` — an Archimedean
  spiral scanned as one continuous line: the two partial-scan families of Ede (Ede & Beanland, "Partial scanning
  transmission electron microscopy with deep learning", Sci. Rep. 10, 8332, 2020).
* ``lowres`` — every f-th pixel in y and x, the low-resolution initial scan of Mi et al. ("Learning Guided Electron
  Microscopy with Active Acquisition", MICCAI 2020).
* ``lines`` — whole scan lines (every k-th line, or random lines), the cheapest pattern for a raster scan generator.
* ``hexgrid`` — a hexagonal lattice, the densest regular packing (most even spacing for a given point count).
* ``bluenoise`` — a Poisson-disk (blue-noise) point set: random but with no two points closer than a radius, made by
  parallel dart throwing (a maximal independent set of random candidates, cf. Wei, "Parallel Poisson disk sampling",
  SIGGRAPH 2008) then trimmed to the exact count by removing the most crowded points (cf. Yuksel, "Sample
  elimination for generating Poisson disk sample sets", Eurographics 2015).

Every pattern scans at least one pixel. The beam path (:attr:`MaskResult.path`) is the spiral's own order for the
spiral and a serpentine raster for the others (:mod:`.path`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .path import serpentine_order, spiral_path
from .spec import PATTERNS, MaskResult, MaskSpec

__all__ = ["make_mask", "make_masks", "target_count"]

# 8-connected digital line: about 2·sqrt(2)/π ≈ 0.9 pixels per unit length; coverage ≈ this / arm spacing
_SPIRAL_PX_PER_LENGTH = 2.0 * np.sqrt(2.0) / np.pi
# blue noise: random candidate points per wanted point (more: closer to ideal Poisson-disk, slower)
_BLUENOISE_CANDIDATES = 5


def _check_shape(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    try:
        dims = tuple(int(s) for s in shape)
    except TypeError as err:
        raise ValueError(f"shape must be a tuple of {ndim} positive sizes, got {shape!r}") from err
    if len(dims) != ndim or min(dims) < 1:
        raise ValueError(f"shape must be a tuple of {ndim} positive sizes, got {shape!r}")
    return dims


def target_count(shape: tuple[int, int], coverage: float) -> int:
    """Number of pixels a scan at ``coverage`` visits on ``shape``: round(c·H·W), at least 1."""
    height, width = shape
    return int(min(height * width, max(1, np.floor(coverage * height * width + 0.5))))


def _round(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5).astype(np.int64)


def _place_unique(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mask with one pixel per point: colliding points move to the nearest free pixel (keeps the point count)."""
    height, width = shape
    ys = np.clip(ys, 0, height - 1)
    xs = np.clip(xs, 0, width - 1)
    if len(ys) >= height * width:
        return np.ones(shape, dtype=bool)
    lin = ys * width + xs
    mask = np.zeros(height * width, dtype=bool)
    _, first = np.unique(lin, return_index=True)
    mask[lin[first]] = True
    extra = np.delete(lin, first)
    while extra.size:
        # nearest free pixel of every pixel (indices of the nearest zero of the mask)
        _, (iy, ix) = ndimage.distance_transform_edt(mask.reshape(height, width), return_indices=True)
        target = iy.ravel()[extra] * width + ix.ravel()[extra]
        target, first = np.unique(target, return_index=True)
        mask[target] = True
        extra = np.delete(extra, first)
    return mask.reshape(height, width)


def _random(shape: tuple[int, int], spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    height, width = shape
    n = target_count(shape, spec.coverage)
    mask = np.zeros(height * width, dtype=bool)
    mask[rng.choice(height * width, size=n, replace=False)] = True
    return mask.reshape(shape), {}


def _jittered_lattice(
    shape: tuple[int, int],
    dy: float,
    dx: float,
    row_shift: float,
    jitter: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Lattice: row spacing ``dy``, column spacing ``dx``, odd rows shifted by ``row_shift``; random offset, jitter."""
    height, width = shape
    oy = rng.uniform(0.0, dy)
    ox = rng.uniform(0.0, dx)
    rows = np.arange(oy, height, dy)
    # columns reach one spacing to the left so shifted rows still fill the left edge
    cols = np.arange(ox - dx, width + dx, dx)
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    xx = xx + row_shift * (np.arange(len(rows))[:, None] % 2)
    yy, xx = yy.ravel(), xx.ravel()
    keep = (xx > -0.5) & (xx < width - 0.5)
    yy, xx = yy[keep], xx[keep]
    if jitter > 0:
        yy = yy + rng.uniform(-0.5, 0.5, yy.size) * jitter * dy
        xx = xx + rng.uniform(-0.5, 0.5, xx.size) * jitter * dx
    return _place_unique(_round(yy), _round(xx), shape)


def _grid(shape: tuple[int, int], spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    spacing = 1.0 / np.sqrt(spec.coverage)
    mask = _jittered_lattice(shape, spacing, spacing, 0.0, spec.effective_jitter, rng)
    return mask, {"spacing": float(spacing), "jitter": spec.effective_jitter}


def _hexgrid(shape: tuple[int, int], spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    spacing = np.sqrt(2.0 / (np.sqrt(3.0) * spec.coverage))
    row_spacing = spacing * np.sqrt(3.0) / 2.0
    mask = _jittered_lattice(shape, row_spacing, spacing, spacing / 2.0, spec.effective_jitter, rng)
    return mask, {"spacing": float(spacing), "row_spacing": float(row_spacing), "jitter": spec.effective_jitter}


def _lines(shape: tuple[int, int], spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Whole rows; the pixel budget round(c·H·W) is met exactly by cutting the last row short (the time ran out)."""
    height, width = shape
    n = target_count(shape, spec.coverage)
    n_rows = -(-n // width)  # ceil
    info: dict[str, Any] = {"mode": spec.lines_mode}
    if spec.lines_mode == "regular":
        k = max(1, int(np.floor(1.0 / spec.coverage + 0.5)))
        if n_rows > 1:
            k = min(k, (height - 1) // (n_rows - 1))  # the rows must fit in the image
        offset = int(rng.integers(0, height - (n_rows - 1) * k))
        rows = offset + k * np.arange(n_rows)
        info["k"] = k
    else:
        rows = np.sort(rng.choice(height, size=n_rows, replace=False))
    mask = np.zeros(shape, dtype=bool)
    mask[rows[:-1]] = True
    last = n - (n_rows - 1) * width  # pixels left for the last row, 1..W
    if (n_rows - 1) % 2 == 0:  # the serpentine scans this row left to right: keep its start
        mask[rows[-1], :last] = True
    else:
        mask[rows[-1], width - last :] = True
    info["rows"] = int(n_rows)
    info["last_row_px"] = int(last)
    return mask, info


def _lowres(shape: tuple[int, int], spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    factor = spec.lowres_factor or max(1, int(np.floor(1.0 / np.sqrt(spec.coverage) + 0.5)))
    mask = np.zeros(shape, dtype=bool)
    mask[::factor, ::factor] = True  # nearest-neighbour down-sampling keeps pixel (f·i, f·j)
    return mask, {"factor": int(factor)}


def _spiral(
    shape: tuple[int, int], spec: MaskSpec, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Spiral whose arm spacing is tuned to hit the coverage: secant steps on log(coverage) vs log(spacing)."""
    height, width = shape
    start_angle = float(rng.uniform(0.0, 2.0 * np.pi))
    target = spec.coverage
    spacing = max(1.0, _SPIRAL_PX_PER_LENGTH / target)
    slope = -1.0  # coverage ∝ 1/spacing while the arms are apart; flatter near full coverage
    best: tuple[float, float, np.ndarray] | None = None
    previous: tuple[float, float] | None = None
    for _ in range(8):
        path = spiral_path(shape, spacing, start_angle)
        achieved = len(path) / (height * width)
        error = abs(achieved / target - 1.0)
        if best is None or error < best[0]:
            best = (error, spacing, path)
        if error < 0.01:
            break
        log_d, log_c = np.log(spacing), np.log(achieved)
        if previous is not None and abs(log_d - previous[0]) > 1e-9:
            slope = min(-0.05, (log_c - previous[1]) / (log_d - previous[0]))
        previous = (log_d, log_c)
        new_spacing = float(np.clip(np.exp(log_d + (np.log(target) - log_c) / slope), 0.5, 4.0 * max(height, width)))
        if abs(new_spacing - spacing) < 1e-6 * spacing:
            break
        spacing = new_spacing
    assert best is not None
    _, spacing, path = best
    mask = np.zeros(shape, dtype=bool)
    mask[path[:, 0], path[:, 1]] = True
    return mask, {"arm_spacing": float(spacing), "start_angle": start_angle}, path


def _random_maximal_independent_set(n: int, edges: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Maximal independent set by parallel rounds: a node joins when its priority beats all its active neighbours.

    The result equals sequential dart throwing in priority order (random sequential adsorption).
    """
    active = np.ones(n, dtype=bool)
    chosen = np.zeros(n, dtype=bool)
    a, b = edges[:, 0], edges[:, 1]
    while active.any():
        live = active[a] & active[b]
        a, b = a[live], b[live]
        loses = np.zeros(n, dtype=bool)
        # the endpoint with the larger priority value loses this round
        a_loses = priority[a] > priority[b]
        loses[a[a_loses]] = True
        loses[b[~a_loses]] = True
        winners = active & ~loses
        chosen |= winners
        active &= ~winners
        knocked = np.zeros(n, dtype=bool)
        knocked[b[winners[a]]] = True
        knocked[a[winners[b]]] = True
        active &= ~knocked
    return chosen


def _trim_crowded(points: np.ndarray, n_keep: int, rng: np.random.Generator) -> np.ndarray:
    """Remove points from the most crowded spots (smallest nearest-neighbour distance) until ``n_keep`` remain."""
    points = points[rng.permutation(len(points))]
    while len(points) > n_keep:
        excess = len(points) - n_keep
        dist, idx = cKDTree(points).query(points, k=2)
        nn_dist, nn = dist[:, 1], idx[:, 1]
        # of a mutual nearest pair remove only one (the later index), so a pair never leaves a hole
        removable = ~((nn[nn] == np.arange(len(points))) & (np.arange(len(points)) < nn))
        candidates = np.flatnonzero(removable)
        batch = max(1, min(excess, len(points) // 50))
        drop = candidates[np.argsort(nn_dist[candidates], kind="stable")[:batch]]
        points = np.delete(points, drop, axis=0)
    return points


def _bluenoise(shape: tuple[int, int], spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Poisson-disk points: dart throwing over continuous random candidates, radius tuned so that slightly more
    than round(c·H·W) points fit, then the most crowded points removed down to the exact count."""
    height, width = shape
    n = target_count(shape, spec.coverage)
    n_pixels = height * width
    if n >= n_pixels:
        return np.ones(shape, dtype=bool), {"radius": 0.0}
    # continuous candidates (not pixel centres: the disk radius then acts smoothly even below 2 px)
    n_cand = _BLUENOISE_CANDIDATES * n
    cand = rng.uniform((-0.5, -0.5), (height - 0.5, width - 0.5), size=(n_cand, 2))
    # saturated dart throwing reaches a density ≈ 0.6965 / r² (disk packing fraction 0.547); fewer candidates less
    r_max = float(np.sqrt(0.6965 / spec.coverage))
    pairs = cKDTree(cand).query_pairs(r_max, output_type="ndarray")
    pair_dist = np.hypot(*(cand[pairs[:, 0]] - cand[pairs[:, 1]]).T)
    priority = rng.permutation(n_cand)
    radius = 0.9 * r_max
    best: tuple[int, float, np.ndarray] | None = None
    for _ in range(8):
        chosen = _random_maximal_independent_set(n_cand, pairs[pair_dist < radius], priority)
        count = int(chosen.sum())
        if count >= n and (best is None or count < best[0]):
            best = (count, radius, chosen)
        if n <= count <= 1.03 * n:
            break
        # density ∝ 1/r²: aim 1 % above the target
        radius = min(r_max, radius * np.sqrt(count / (1.01 * n)))
    if best is None:  # even the smallest radius left too few points: keep the densest set, fill below
        best = (count, radius, chosen)
    _, radius, chosen = best
    points = cand[chosen]
    if len(points) > n:
        points = _trim_crowded(points, n, rng)
    mask = _place_unique(_round(points[:, 0]), _round(points[:, 1]), shape)
    missing = n - int(mask.sum())
    if missing > 0:  # too few points packed: fill the largest voids
        dist = ndimage.distance_transform_edt(~mask).ravel()
        order = np.lexsort((rng.random(dist.size), -dist))
        mask.ravel()[order[:missing]] = True
    return mask, {"radius": float(radius)}


_MAKERS: dict[str, Callable[..., tuple[Any, ...]]] = {
    "random": _random,
    "grid": _grid,
    "spiral": _spiral,
    "lines": _lines,
    "lowres": _lowres,
    "hexgrid": _hexgrid,
    "bluenoise": _bluenoise,
}
assert set(_MAKERS) == set(PATTERNS)


def make_mask(shape: tuple[int, int], spec: MaskSpec, rng: np.random.Generator | None = None) -> MaskResult:
    """One 2D ``(y, x)`` mask of ``spec.pattern`` at ``spec.coverage`` with its beam path.

    ``rng`` defaults to ``np.random.default_rng(spec.seed)``, so the same spec gives the same mask.
    """
    dims = _check_shape(shape, 2)
    if rng is None:
        rng = np.random.default_rng(spec.seed)
    made = _MAKERS[spec.pattern](dims, spec, rng)
    mask, info = made[0], dict(made[1])
    path = made[2] if len(made) > 2 else None
    if not mask.any():  # tiny images with a coarse lattice: scan at least one pixel
        mask = mask.copy()
        mask[int(rng.integers(dims[0])), int(rng.integers(dims[1]))] = True
        path = None
    if path is None:
        path = serpentine_order(mask)
    return MaskResult(mask=mask, path=path, coverage_requested=float(spec.coverage), info=info)


def make_masks(shape: tuple[int, int, int], spec: MaskSpec) -> tuple[np.ndarray, list[MaskResult]]:
    """Masks for a ``(z, y, x)`` volume: a new mask per slice (``spec.per_slice``) or one mask for all slices.

    Per-slice masks use ``np.random.default_rng([spec.seed, z])`` for slice ``z`` (fresh entropy when the seed is
    ``None``), so any slice can be re-made on its own.
    """
    depth, height, width = _check_shape(shape, 3)
    volume = np.zeros((depth, height, width), dtype=bool)
    if not spec.per_slice:
        result = make_mask((height, width), spec)
        volume[:] = result.mask
        return volume, [result] * depth
    results = []
    for z in range(depth):
        result = slice_mask((height, width), spec, z)
        volume[z] = result.mask
        results.append(result)
    return volume, results


def slice_mask(shape: tuple[int, int], spec: MaskSpec, z: int) -> MaskResult:
    """The mask of slice ``z`` of a volume, exactly as :func:`make_masks` draws it (for slice-by-slice streaming)."""
    if not spec.per_slice:
        return make_mask(shape, spec)
    rng = np.random.default_rng() if spec.seed is None else np.random.default_rng([spec.seed, z])
    return make_mask(shape, spec, rng)
